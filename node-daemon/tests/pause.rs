//! The pause process, for real: the UTS namespace it holds has the pod's hostname by the time
//! `spawn` returns, so the first container to join never sees the host's.

use std::os::fd::AsRawFd;

const DAEMON: &str = env!("CARGO_BIN_EXE_node-daemon");

/// The hostname of the UTS namespace of `pid`, read from a thread that joins it (setns of a
/// UTS namespace affects only the calling thread).
fn hostname_of(pid: i32) -> String {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/uts")).expect("the pause's UTS namespace");
    std::thread::spawn(move || {
        // SAFETY: setns(2) on a valid descriptor; only this thread changes namespace.
        let joined = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUTS) };
        assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
        nix::unistd::gethostname()
            .expect("gethostname")
            .to_string_lossy()
            .into_owned()
    })
    .join()
    .expect("the reading thread")
}

#[test]
fn the_pods_hostname_is_set_before_spawn_returns() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "new namespaces need root (keel's tests run as root)"
    );
    // Our own cgroup (v2, wherever it is mounted): the pause processes join it, nothing else.
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 path");
    let procs = keel_host::cgroup::cgroup2_mount()
        .expect("the cgroup2 mount")
        .join(path.trim_start_matches('/'))
        .join("cgroup.procs");
    let host = nix::unistd::gethostname()
        .expect("gethostname")
        .to_string_lossy()
        .into_owned();
    for i in 0..20 {
        let name = format!("keel-pause-test-{i}");
        assert_ne!(name, host);
        let pid =
            keel_runtime::pause::spawn(std::path::Path::new(DAEMON), &name, &procs).expect("spawn");
        // At once, before the pause process could have run any code of its own.
        let seen = hostname_of(pid);
        // SAFETY: kill(2) and waitpid(2) on our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        assert_eq!(
            seen, name,
            "spawn {i}: the namespace still had another name"
        );
    }
}
