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

use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::Path, time::Duration};

use procfs::process::{all_processes_with_root, ProcState, Process};

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
        while killed.iter().any(|k| pid_is_live(proc, k.pid))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    killed
}

/// Kills every live process whose tag names a run whose `cargo xtask` is gone (killed before
/// it could sweep), and returns them. A tag that does not name a process is left alone, and
/// so is one whose pid runs (a reused pid errs on the side of leaving things be).
pub fn sweep_dead_runs() -> Vec<Leftover> {
    sweep_dead_runs_in(Path::new("/proc"))
}

fn sweep_dead_runs_in(proc: &Path) -> Vec<Leftover> {
    let owner_is_gone = |tag: &[u8]| {
        let owner = std::str::from_utf8(tag)
            .ok()
            .and_then(|tag| tag.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
            .filter(|pid| *pid > 0);
        owner.is_some_and(|pid| !pid_is_live(proc, pid))
    };
    let found = carrying(proc, owner_is_gone);
    for leftover in &found {
        // SAFETY: kill has no memory preconditions; the pid was read from /proc just now.
        unsafe { libc::kill(leftover.pid, libc::SIGKILL) };
    }
    found
}

/// Live processes under `proc` whose environment sets `RUN_TAG_ENV` to `tag`.
fn tagged(proc: &Path, tag: &str) -> Vec<Leftover> {
    carrying(proc, |value| value == tag.as_bytes())
}

/// Live processes under `proc` (this one aside) with a `RUN_TAG_ENV` value that `matches`.
fn carrying(proc: &Path, matches: impl Fn(&[u8]) -> bool) -> Vec<Leftover> {
    let me = std::process::id() as i32;
    let Ok(all) = all_processes_with_root(proc) else {
        return Vec::new();
    };
    // An entry that does not read or parse (gone meanwhile, a kernel thread's empty
    // environment, a protected process): not ours to judge.
    all.flatten()
        .filter(|process| process.pid() != me && is_live(process) && carries(process, &matches))
        .map(|process| Leftover {
            pid: process.pid(),
            command: command_of(&process),
        })
        .collect()
}

fn carries(process: &Process, matches: impl Fn(&[u8]) -> bool) -> bool {
    process.environ().is_ok_and(|environment| {
        environment
            .get(OsStr::new(RUN_TAG_ENV))
            .is_some_and(|value| matches(value.as_bytes()))
    })
}

/// Whether the process exists and is not a zombie (or dead).
fn is_live(process: &Process) -> bool {
    process
        .stat()
        .and_then(|stat| stat.state())
        .is_ok_and(|state| !matches!(state, ProcState::Zombie | ProcState::Dead))
}

fn pid_is_live(proc: &Path, pid: i32) -> bool {
    Process::new_with_root(proc.join(pid.to_string())).is_ok_and(|process| is_live(&process))
}

/// Its command line, or its name in brackets when the line is empty or not UTF-8.
fn command_of(process: &Process) -> String {
    match process.cmdline() {
        Ok(words) if !words.is_empty() => words.join(" "),
        _ => format!(
            "[{}]",
            process.stat().map(|stat| stat.comm).unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::*;

    /// Waits until `pid` shows the tag: a process's environment reads empty in `/proc` for a
    /// moment after `spawn` returns (exec has closed the parent's pipe but not yet laid out the
    /// new stack), and a sweep in that moment would not see it.
    fn until_tagged(pid: u32, tag: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !tagged(Path::new("/proc"), tag)
            .iter()
            .any(|l| l.pid == pid as i32)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "pid {pid} never showed the tag"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

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
        until_tagged(ours.id(), &tag);

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
    fn processes_of_a_run_whose_xtask_is_gone_are_killed() {
        // A run whose owner is gone: a process that has exited and been reaped.
        let mut owner = Command::new("true").spawn().expect("true");
        let gone = owner.id();
        owner.wait().expect("reaped");
        let dead_tag = format!("{gone}-{}", 1);
        let live_tag = format!("{}-1", std::process::id());
        let mut orphan = sleeper(&[(RUN_TAG_ENV, &dead_tag)]);
        let mut live = sleeper(&[(RUN_TAG_ENV, &live_tag)]);
        let mut odd = sleeper(&[(RUN_TAG_ENV, "not-a-pid")]);
        until_tagged(orphan.id(), &dead_tag);
        until_tagged(live.id(), &live_tag);
        until_tagged(odd.id(), "not-a-pid");

        let killed = sweep_dead_runs();
        let ours: Vec<&Leftover> = killed
            .iter()
            .filter(|k| [orphan.id(), live.id(), odd.id()].contains(&(k.pid as u32)))
            .collect();
        assert_eq!(ours.len(), 1, "{killed:?}");
        assert_eq!(ours[0].pid, orphan.id() as i32);
        let status = orphan.wait().expect("reaped");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        for kept in [&mut live, &mut odd] {
            assert!(
                kept.try_wait().expect("try_wait").is_none(),
                "a kept process died"
            );
            kept.kill().expect("kill");
            kept.wait().expect("wait");
        }
    }

    #[test]
    fn a_process_that_exits_within_the_grace_is_not_a_leftover() {
        let tag = new_tag();
        let mut brief = Command::new("sleep")
            .arg("0.3")
            .env(RUN_TAG_ENV, &tag)
            .spawn()
            .expect("sleep");
        until_tagged(brief.id(), &tag);
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
        while pid_is_live(Path::new("/proc"), pid) {
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
        // The fields after the state that every kernel since 2.6 writes (ppid .. cnswap).
        let rest = "1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let write = |pid: &str, stat: &str, environ: &[u8]| {
            let dir = proc.path().join(pid);
            std::fs::create_dir_all(&dir).expect("dir");
            std::fs::write(dir.join("stat"), stat).expect("stat");
            std::fs::write(dir.join("environ"), environ).expect("environ");
        };
        // No closing parenthesis, a line cut short, a zombie, a dead one, a name with ") Z" in
        // it that is running (with non-UTF-8 bytes and an entry with no `=` around the tag), a
        // value that only starts with the tag, and a directory that is not a pid.
        write(
            "100",
            &format!("100 (broken S {rest}"),
            b"KEEL_TEST_RUN=t\0",
        );
        write("101", "101 (short) S 1 1", b"KEEL_TEST_RUN=t\0");
        write("102", &format!("102 (z) Z {rest}"), b"KEEL_TEST_RUN=t\0");
        write("103", &format!("103 (x) X {rest}"), b"KEEL_TEST_RUN=t\0");
        write(
            "104",
            &format!("104 (a) Z b) S {rest}"),
            b"\xff\xfe\0KEEL_TEST_RUN=t\0junk",
        );
        write("105", &format!("105 (p) S {rest}"), b"KEEL_TEST_RUN=tt\0");
        write("self-ish", &format!("1 (x) S {rest}"), b"KEEL_TEST_RUN=t\0");
        let found = tagged(proc.path(), tag);
        let pids: Vec<i32> = found.iter().map(|l| l.pid).collect();
        assert_eq!(pids, vec![104], "{found:?}");
        // No cmdline file: the name in brackets.
        assert_eq!(found[0].command, "[a) Z b]");
    }
}
