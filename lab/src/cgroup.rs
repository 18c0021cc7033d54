//! A cgroup v2 directory for a test: the daemon attaches its programs there, clients run in it.

use crate::ledger::{Ledger, Resource};
use std::{
    fs, io,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

/// The cgroup2 mount: `/sys/fs/cgroup` on pure v2 hosts, `/sys/fs/cgroup/unified` on hybrid.
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, mount, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            (fs_type == "cgroup2").then(|| PathBuf::from(mount))
        })
        .min_by_key(|p| p.as_os_str().len())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 mount"))
}

/// A cgroup that is emptied (its processes killed) and removed on drop.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    /// Written into this process's ledger (see [`crate::ledger`]).
    recorded: bool,
}

impl Cgroup {
    /// Creates `<cgroup2 mount>/NAME`.
    pub fn create(name: &str) -> io::Result<Self> {
        let path = cgroup2_mount()?.join(name);
        let ledger = Ledger::host();
        let hold = ledger.hold();
        fs::create_dir_all(&path)?;
        let recorded = ledger.record(Resource::cgroup(&path));
        drop(hold);
        Ok(Self { path, recorded })
    }

    /// The guard of a cgroup that exists already (one a dead run left), to remove it.
    #[cfg(test)]
    pub(crate) fn adopt(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            recorded: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// CPU time used by the cgroup's processes so far (`usage_usec` of `cpu.stat`, which
    /// cgroup2 keeps for every cgroup, cpu controller enabled or not).
    pub fn cpu_usage(&self) -> io::Result<Duration> {
        let stat = fs::read_to_string(self.path.join("cpu.stat"))?;
        stat.lines()
            .find_map(|line| line.strip_prefix("usage_usec ")?.trim().parse().ok())
            .map(Duration::from_micros)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "cpu.stat has no usage_usec"))
    }

    /// Pids currently in the cgroup (not its children).
    pub fn pids(&self) -> Vec<i32> {
        pids_in(&self.path)
    }
}

fn pids_in(path: &Path) -> Vec<i32> {
    fs::read_to_string(path.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Removes a cgroup's descendants, deepest first, retrying while their processes exit.
fn remove_children(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let child = entry.path();
            remove_children(&child);
            for _ in 0..50 {
                if fs::remove_dir(&child).is_ok() || !child.exists() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Kills what runs in the cgroup at `path` and removes it; `true` once it is gone (removed
/// already included).
pub(crate) fn remove(path: &Path) -> bool {
    if !path.exists() {
        return true; // the code under test removed it, as it should
    }
    // Whatever the code under test left below it (pods, their shims) dies with it, and
    // the same-named directories of a hybrid host's v1 hierarchies go too.
    let _ = fs::write(path.join("cgroup.kill"), "1");
    remove_children(path);
    if let Some(name) = path.file_name() {
        for hierarchy in ["memory", "cpu", "cpuacct"] {
            let v1 = Path::new("/sys/fs/cgroup").join(hierarchy).join(name);
            if v1.exists() {
                remove_children(&v1);
                let _ = fs::remove_dir(&v1);
            }
        }
    }
    for _ in 0..50 {
        let pids = pids_in(path);
        for pid in &pids {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        if pids.is_empty() && fs::remove_dir(path).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!("keel-lab: cannot remove cgroup {}", path.display());
    false
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if remove(&self.path) && self.recorded {
            Ledger::host().released();
        }
    }
}
