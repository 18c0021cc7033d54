//! Processes a test run left running.
//!
//! Every test cleans up after itself with Drop guards, but a guard cannot run in a test binary
//! that was killed, aborted or lost track of a child, and what that binary had started — a
//! store member, a node daemon, etcd, prometheus — would outlive the run. `cargo xtask test`
//! therefore gives `cargo test` a tag unique to the run ([`RUN_TAG_ENV`]); every process the
//! tests start inherits it, and once the tests are over [`sweep`] kills each live process
//! whose environment still carries it. A process started with a cleared environment (a pod's
//! container is given only the pod's) carries no tag; what it is for is the process tree the
//! harness itself starts.

use std::{ffi::OsStr, fs, os::unix::ffi::OsStrExt, path::Path, time::Duration};

/// The environment variable that carries the run's tag.
pub const RUN_TAG_ENV: &str = "KEEL_TEST_RUN";

/// How long [`sweep`] waits for what it killed to be gone.
const GONE_WITHIN: Duration = Duration::from_secs(5);

/// A tag no other run has: this process's id and the time.
pub fn new_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// One process found carrying the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: i32,
    /// Its command line, or its name when the line is empty (a kernel-side exec failure).
    pub command: String,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}: {}", self.pid, self.command)
    }
}

/// Kills every live process (this one aside) whose environment has `RUN_TAG_ENV=tag` and
/// that is still there after `grace` (a guard's kill may still be landing as its test binary
/// exits), and returns them. Zombies are left to their parents; a process that exits
/// meanwhile is not an error.
pub fn sweep(tag: &str, grace: Duration) -> Vec<Leftover> {
    let proc = Path::new("/proc");
    let deadline = std::time::Instant::now() + grace;
    while !tagged(proc, tag).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    sweep_in(proc, tag)
}

fn sweep_in(proc: &Path, tag: &str) -> Vec<Leftover> {
    let mut killed: Vec<Leftover> = Vec::new();
    // A process can start another between the scan and the kill; a few scans catch those.
    for _ in 0..3 {
        let found = tagged(proc, tag);
        if found.is_empty() {
            break;
        }
        for leftover in found {
            // SAFETY: kill has no memory preconditions; the pid was read from /proc just now.
            unsafe { libc::kill(leftover.pid, libc::SIGKILL) };
            if !killed.iter().any(|k| k.pid == leftover.pid) {
                killed.push(leftover);
            }
        }
        let deadline = std::time::Instant::now() + GONE_WITHIN;
        while killed.iter().any(|k| is_live(proc, k.pid)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    killed
}

/// Live processes under `proc` whose environment holds the exact entry `RUN_TAG_ENV=tag`.
fn tagged(proc: &Path, tag: &str) -> Vec<Leftover> {
    let entry = format!("{RUN_TAG_ENV}={tag}");
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for item in dir.flatten() {
        let Some(pid) = item
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me || !is_live(proc, pid) {
            continue;
        }
        // Unreadable (gone, a kernel thread, or protected): not ours to judge.
        let Ok(environ) = fs::read(item.path().join("environ")) else {
            continue;
        };
        if !environ.split(|&b| b == 0).any(|e| e == entry.as_bytes()) {
            continue;
        }
        found.push(Leftover {
            pid,
            command: command_of(&item.path()),
        });
    }
    found
}

/// Whether `pid` exists and is not a zombie (or dead, `X`).
fn is_live(proc: &Path, pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(proc.join(pid.to_string()).join("stat")) else {
        return false;
    };
    // The state follows the command, which is in parentheses and may hold either.
    match stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
    {
        Some(state) => state != "Z" && state != "X",
        None => false,
    }
}

fn command_of(dir: &Path) -> String {
    let line = fs::read(dir.join("cmdline")).unwrap_or_default();
    let words: Vec<String> = line
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| OsStr::from_bytes(w).to_string_lossy().into_owned())
        .collect();
    if words.is_empty() {
        let name = fs::read_to_string(dir.join("comm")).unwrap_or_default();
        return format!("[{}]", name.trim());
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::*;

    fn sleeper(env: &[(&str, &str)]) -> Child {
        let mut command = Command::new("sleep");
        command.arg("300").env_remove(RUN_TAG_ENV);
        for (k, v) in env {
            command.env(k, v);
        }
        command.spawn().expect("sleep")
    }

    #[test]
    fn a_tagged_process_is_killed_and_named_and_others_are_left_alone() {
        let tag = new_tag();
        let prefix_of_tag = format!("{tag}0");
        let value_holding_it = format!("{RUN_TAG_ENV}={tag}");
        let mut ours = sleeper(&[(RUN_TAG_ENV, &tag)]);
        let mut another_run = sleeper(&[(RUN_TAG_ENV, &prefix_of_tag)]);
        let mut inside_a_value = sleeper(&[("SOMETHING", &value_holding_it)]);
        let mut untagged = sleeper(&[]);

        let killed = sweep(&tag, Duration::from_millis(100));
        assert_eq!(killed.len(), 1, "{killed:?}");
        assert_eq!(killed[0].pid, ours.id() as i32);
        assert_eq!(killed[0].command, "sleep 300");
        let status = ours.wait().expect("reaped");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        for other in [&mut another_run, &mut inside_a_value, &mut untagged] {
            assert!(
                other.try_wait().expect("try_wait").is_none(),
                "an untagged process died"
            );
            other.kill().expect("kill");
            other.wait().expect("wait");
        }
        // Nothing left: a second sweep finds nothing.
        assert!(sweep(&tag, Duration::ZERO).is_empty());
    }

    #[test]
    fn a_process_that_exits_within_the_grace_is_not_a_leftover() {
        let tag = new_tag();
        let mut brief = Command::new("sleep")
            .arg("0.3")
            .env(RUN_TAG_ENV, &tag)
            .spawn()
            .expect("sleep");
        // Reap it as soon as it exits, as its parent would.
        let reaper = std::thread::spawn(move || brief.wait().expect("wait"));
        assert!(sweep(&tag, Duration::from_secs(10)).is_empty());
        assert!(reaper.join().expect("reaper").success());
    }

    #[test]
    fn a_zombie_is_left_to_its_parent() {
        let tag = new_tag();
        let mut child = Command::new("true")
            .env(RUN_TAG_ENV, &tag)
            .spawn()
            .expect("true");
        // Let it exit without reaping it: it stays a zombie of this process.
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while is_live(Path::new("/proc"), pid) {
            assert!(std::time::Instant::now() < deadline, "`true` did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sweep(&tag, Duration::ZERO).is_empty());
        child.wait().expect("reaped");
    }

    #[test]
    fn malformed_proc_entries_are_skipped() {
        let proc = tempfile::tempdir().expect("tempdir");
        let tag = "t";
        let write = |pid: &str, stat: &str, environ: &[u8]| {
            let dir = proc.path().join(pid);
            fs::create_dir_all(&dir).expect("dir");
            fs::write(dir.join("stat"), stat).expect("stat");
            fs::write(dir.join("environ"), environ).expect("environ");
        };
        // No closing parenthesis, a zombie, a name with ") Z" in it that is running, and a
        // directory that is not a pid.
        write("100", "100 (broken S 1", b"KEEL_TEST_RUN=t\0");
        write("101", "101 (z) Z 1", b"KEEL_TEST_RUN=t\0");
        write(
            "102",
            "102 (a) Z b) S 1",
            b"\xff\xfe\0KEEL_TEST_RUN=t\0junk",
        );
        write("self-ish", "1 (x) S 1", b"KEEL_TEST_RUN=t\0");
        let found = tagged(proc.path(), tag);
        let pids: Vec<i32> = found.iter().map(|l| l.pid).collect();
        assert_eq!(pids, vec![102], "{found:?}");
        // No cmdline file: the name in brackets (empty here).
        assert_eq!(found[0].command, "[]");
    }
}
