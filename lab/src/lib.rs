//! keel's test lab: network namespaces wired like a node with pods, for tests and demos that
//! must exercise the real kernel without any packet leaving the machine.
//!
//! # Layout
//! - [`netns`]: a named network namespace that is deleted on drop.
//! - [`ledger`]: what each process created, so that a later run removes what a killed one left;
//!   [`dead_runs`] removes it.
//! - [`cgroup`]: a cgroup v2 directory that is emptied and removed on drop.
//! - [`process`]: spawning a process inside a namespace and/or cgroup, killed on drop.
//! - [`oci`]: writing container images (OCI layouts, docker archives, the busybox image).
//! - [`tree`]: a directory tree as data, to show a host directory unchanged.
//! - [`cluster`]: a whole keel cluster — control-plane members and node daemons, each in a
//!   namespace of its own on one lab bridge.
//! - [`prometheus`]: Debian's Prometheus scraping a cluster's members and nodes.
//! - [`lab`]: the topology — a node (a namespace of its own, or the host) holding a bridge,
//!   and pods, each a namespace with a veth on that bridge.
//!
//! # Safety of the topology
//! Pods get an address on the lab subnet and **no default route**; a node namespace has no
//! interface but its bridge and loopback. Whatever a pod or a client sends can only reach the
//! lab. Everything is torn down by `Drop`, so a failing test (a panic) cleans up too.

pub mod cgroup;
pub mod cluster;
pub mod dead_runs;
pub mod history;
pub mod lab;
pub mod ledger;
pub mod netns;
pub mod oci;
pub mod process;
pub mod prometheus;
pub mod tree;

pub use cgroup::Cgroup;
pub use lab::{Lab, NodePlacement, Pod};
pub use netns::Netns;
pub use process::{Child, Placement};

use std::path::PathBuf;

/// Where keel's binaries are: `$KEEL_BIN_DIR`, else the cargo target directory the running
/// executable was built into (`target/debug/deps/x` → `target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KEEL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of one of keel's binaries (`node-daemon`, `keel-lab-agent`).
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A free loopback port for a process a test starts (bound here, then released; the process
/// binds it a moment later). Below the kernel's ephemeral range (32768–60999 by default): a port
/// the kernel hands out for `:0` is also one any outgoing connection may take as its local
/// port meanwhile, and one did, between a member's kill and its restart, and between a free
/// port's choice and a member's start while other tests connected. Each process starts at its
/// own offset, and a counter keeps the tests of one process apart.
pub fn free_loopback_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    const COUNT: u32 = 22_000;
    let offset = std::process::id().wrapping_mul(7_919) % COUNT;
    for _ in 0..COUNT {
        let candidate = FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = candidate as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!(
            "no free loopback port between {FIRST} and {}",
            FIRST + COUNT
        ),
    ))
}

/// Where tests and benches pin their programs and maps: a bpffs directory named after `prefix`,
/// the running process and a counter (`/sys/fs/bpf/<prefix>-<pid>-<n>`), so that
/// [`sweep_dead_pins`] can tell whose it is.
pub fn pin_dir(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(BPFFS).join(format!("{prefix}-{}-{n}", std::process::id()))
}

const BPFFS: &str = "/sys/fs/bpf";

/// Removes the [`pin_dir`]s of `prefix` whose process is gone. A test or bench killed outright
/// (SIGKILL, a timeout) skips every `Drop`, and its pins keep the programs loaded and the
/// maps allocated (over 100 MiB each with the daemon's default sizes) until someone unpins
/// them. A directory whose process still runs, or that is not named by [`pin_dir`], is kept.
/// Returns what was removed.
pub fn sweep_dead_pins(prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(BPFFS) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = pin_owner(&name, prefix) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if std::fs::remove_dir_all(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// The pid in a [`pin_dir`] name of `prefix`.
fn pin_owner(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let mut parts = rest.rsplitn(3, '-');
    let (_counter, pid) = (parts.next()?.parse::<u32>().ok()?, parts.next()?);
    pid.parse().ok()
}

/// A short id that keeps names of concurrent labs apart (interface names have 15 characters).
pub fn unique_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    id_of(std::process::id(), n)
}

/// The id of a process's `n`th lab: the process's part has a fixed width, so where it ends
/// is known and two processes' ids differ (without it pid 0x12's lab 0x34 and pid 0x123's
/// lab 4 were both `1234`, and named the same host interfaces).
fn id_of(pid: u32, n: u32) -> String {
    format!("{:03x}{n:x}", pid % 0x1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_different_processes_differ() {
        assert_ne!(id_of(0x12, 0x34), id_of(0x123, 0x4));
        assert_eq!(id_of(0x12, 0x34), "01234");
        assert_eq!(id_of(0x1abc, 0), "abc0", "the pid's low 12 bits");
        // Host interfaces are named `kv<id>p<pod>` and `keel<id>`: 15 characters at most
        // for a process's first 4,096 labs.
        assert!(format!("kv{}p99", id_of(u32::MAX, 0xfff)).len() <= 15);
        let ids: std::collections::HashSet<String> = (0..64)
            .flat_map(|pid| (0..64).map(move |n| id_of(pid, n)))
            .collect();
        assert_eq!(ids.len(), 64 * 64, "every (pid, lab) pair has its own id");
    }

    #[test]
    fn pin_directories_name_their_process() {
        let dir = pin_dir("keel-test-datapath");
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert_eq!(
            pin_owner(name, "keel-test-datapath"),
            Some(std::process::id())
        );
        assert_eq!(
            pin_owner(name, "keel-test"),
            Some(std::process::id()),
            "a shorter prefix"
        );
        assert_eq!(
            pin_owner("keel-test-3a74", "keel-test"),
            None,
            "the old names are left alone"
        );
        assert_eq!(pin_owner("keel-test-x-12-y", "keel-test"), None);
        assert_eq!(pin_owner("keel-bench-12-0", "keel-test"), None);
        assert_eq!(pin_owner("keel-testing-12-0", "keel-test"), None);
    }

    /// For real, in bpffs: a pinned map of a process that has exited is unpinned, one of a
    /// live process is not.
    #[test]
    fn dead_runs_pins_are_swept_and_live_ones_kept() -> Result<(), Box<dyn std::error::Error>> {
        let mut child = std::process::Command::new("true").spawn()?;
        let dead = child.id();
        child.wait()?;
        let prefix = format!("keel-test-sweep{}", unique_id());
        let dead_dir = PathBuf::from(BPFFS).join(format!("{prefix}-{dead}-0"));
        let live_dir = pin_dir(&prefix);
        for dir in [&dead_dir, &live_dir] {
            std::fs::create_dir_all(dir)?;
            let map = dir.join("map");
            let status = std::process::Command::new("bpftool")
                .args(["map", "create"])
                .arg(&map)
                .args([
                    "type", "array", "key", "4", "value", "4", "entries", "1", "name", "sweep",
                ])
                .status()?;
            assert!(status.success(), "bpftool map create {}", map.display());
        }
        let removed = sweep_dead_pins(&prefix);
        let live_kept = live_dir.join("map").exists();
        let _ = std::fs::remove_dir_all(&live_dir);
        let _ = std::fs::remove_dir_all(&dead_dir);
        assert_eq!(removed, std::slice::from_ref(&dead_dir));
        assert!(live_kept);
        Ok(())
    }
}
