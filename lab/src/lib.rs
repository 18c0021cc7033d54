//! keel's test lab: network namespaces wired like a node with pods, for tests and demos that
//! must exercise the real kernel without any packet leaving the machine.
//!
//! # Layout
//! - [`netns`]: a named network namespace that is deleted on drop.
//! - [`cgroup`]: a cgroup v2 directory that is emptied and removed on drop.
//! - [`process`]: spawning a process inside a namespace and/or cgroup, killed on drop.
//! - [`oci`]: writing container images (OCI layouts, docker archives, the busybox image).
//! - [`lab`]: the topology — a node (a namespace of its own, or the host) holding a bridge,
//!   and pods, each a namespace with a veth on that bridge.
//!
//! # Safety of the topology
//! Pods get an address on the lab subnet and **no default route**; a node namespace has no
//! interface but its bridge and loopback. Whatever a pod or a client sends can only reach the
//! lab. Everything is torn down by `Drop`, so a failing test (a panic) cleans up too.

pub mod cgroup;
pub mod lab;
pub mod netns;
pub mod oci;
pub mod process;

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

/// A short id that keeps names of concurrent labs apart (interface names have 15 characters).
pub fn unique_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}", std::process::id() % 0xfff, n)
}
