//! What each process built in the kernel, written down so that a later run can remove what a
//! killed one left.
//!
//! The lab's guards remove their namespaces, cgroups and links on `Drop`, which a process
//! killed outright (SIGKILL, a CI timeout, the OOM killer) never runs. So every guard also
//! writes a line into its process's ledger, `/run/keel-lab/<pid>-<start time>`, as it creates
//! what it guards, and [`Ledger::sweep_dead`] (run by `cargo xtask test`, `bench` and `run`
//! before they build anything) removes what the ledgers of dead processes name.
//!
//! A line is removed only when all of these hold, so a sweep never touches what a live run
//! uses:
//! - its owner is gone: no process has that pid with that start time (a pid is reused, the
//!   pair is not);
//! - the thing is still the one that was recorded: the namespace's nsfs inode, the cgroup
//!   directory's inode, the link's ifindex (a later run may have made one of the same name);
//! - no live owner's ledger names it (inode numbers are reused too).
//!
//! `/run` is a tmpfs, emptied at boot like the namespaces, cgroups and links it describes.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Write},
    os::fd::AsRawFd,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use thiserror::Error;

/// Where iproute2 keeps the named namespace `name` (the file `setns` and `nsenter` open).
pub(crate) fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// The kernel's directory for the host link `name` (it exists while the link does).
pub(crate) fn link_dir(name: &str) -> PathBuf {
    Path::new("/sys/class/net").join(name)
}

/// Where the ledgers are.
pub const LEDGER_DIR: &str = "/run/keel-lab";

/// One thing a guard created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `/run/netns/<name>`, with the inode of the namespace it holds.
    Netns { name: String, inode: u64 },
    /// A cgroup v2 directory, with its inode.
    Cgroup { path: PathBuf, inode: u64 },
    /// A link in the host's namespace (a lab bridge when the node is the host).
    Link { name: String, ifindex: u32 },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LedgerError {
    #[error("line {line}: {reason}: {text:?}")]
    Line {
        line: usize,
        reason: &'static str,
        text: String,
    },
}

impl Resource {
    /// The namespace `name` as it is now.
    pub fn netns(name: &str) -> io::Result<Self> {
        let inode = fs::metadata(netns_path(name))?.ino();
        Ok(Self::Netns {
            name: name.to_owned(),
            inode,
        })
    }

    /// The cgroup directory `path` as it is now.
    pub fn cgroup(path: &Path) -> io::Result<Self> {
        Ok(Self::Cgroup {
            path: path.to_owned(),
            inode: fs::metadata(path)?.ino(),
        })
    }

    /// The host link `name` as it is now.
    pub fn link(name: &str) -> io::Result<Self> {
        let ifindex = read_ifindex(name)?;
        Ok(Self::Link {
            name: name.to_owned(),
            ifindex,
        })
    }

    /// Its line in a ledger.
    pub fn line(&self) -> String {
        match self {
            Self::Netns { name, inode } => format!("netns {inode} {name}"),
            Self::Cgroup { path, inode } => format!("cgroup {inode} {}", path.display()),
            Self::Link { name, ifindex } => format!("link {ifindex} {name}"),
        }
    }

    /// Parses line `number` of a ledger. A ledger is root's, but what it names is deleted, so
    /// a line that could point anywhere else is refused.
    fn parse(number: usize, text: &str) -> Result<Self, LedgerError> {
        let bad = |reason| LedgerError::Line {
            line: number,
            reason,
            text: text.to_owned(),
        };
        let mut fields = text.splitn(3, ' ');
        let (Some(kind), Some(id), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected `<kind> <id> <name>`"));
        };
        let id: u64 = id.parse().map_err(|_| bad("the id is not a number"))?;
        match kind {
            "netns" if is_plain_name(name) && name.starts_with("keel-") => Ok(Self::Netns {
                name: name.to_owned(),
                inode: id,
            }),
            "netns" => Err(bad("a namespace name must be one plain keel-* word")),
            "cgroup" => {
                let path = PathBuf::from(name);
                let keel = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| is_plain_name(n) && n.starts_with("keel-"));
                // Where `Cgroup::create` makes them: right under the cgroup2 mount.
                let at_the_top = path.parent().is_some_and(|parent| {
                    parent == Path::new("/sys/fs/cgroup")
                        || parent == Path::new("/sys/fs/cgroup/unified")
                });
                if keel && at_the_top {
                    Ok(Self::Cgroup { path, inode: id })
                } else {
                    Err(bad(
                        "a cgroup must be a keel-* directory right under the cgroup2 mount",
                    ))
                }
            }
            "link" => {
                let ifindex = u32::try_from(id).map_err(|_| bad("an ifindex is 32 bits"))?;
                if is_plain_name(name) && name.starts_with("keel") && name.len() <= 15 {
                    Ok(Self::Link {
                        name: name.to_owned(),
                        ifindex,
                    })
                } else {
                    Err(bad(
                        "a link name is one plain keel* word of at most 15 bytes",
                    ))
                }
            }
            _ => Err(bad("unknown kind (netns, cgroup or link)")),
        }
    }

    /// Whether what the line names is still there and is the thing recorded.
    fn still_there(&self) -> bool {
        match self {
            Self::Netns { name, inode } => {
                fs::metadata(netns_path(name)).is_ok_and(|m| m.ino() == *inode)
            }
            Self::Cgroup { path, inode } => fs::metadata(path).is_ok_and(|m| m.ino() == *inode),
            Self::Link { name, ifindex } => read_ifindex(name).is_ok_and(|i| i == *ifindex),
        }
    }

    /// Whether `self` and `other` name the same thing (by name, whatever the id).
    fn same_name(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Netns { name: a, .. }, Self::Netns { name: b, .. }) => a == b,
            (Self::Cgroup { path: a, .. }, Self::Cgroup { path: b, .. }) => a == b,
            (Self::Link { name: a, .. }, Self::Link { name: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Netns { name, .. } => write!(f, "network namespace {name}"),
            Self::Cgroup { path, .. } => write!(f, "cgroup {}", path.display()),
            Self::Link { name, .. } => write!(f, "link {name}"),
        }
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn read_ifindex(name: &str) -> io::Result<u32> {
    if !is_plain_name(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a link name",
        ));
    }
    let text = fs::read_to_string(link_dir(name).join("ifindex"))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "ifindex is not a number"))
}

/// A process, as the pair that names it for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: i32,
    /// Clock ticks after boot (`/proc/<pid>/stat`'s `starttime`).
    start: u64,
}

impl Owner {
    fn me() -> io::Result<Self> {
        let stat = procfs::process::Process::myself()
            .and_then(|p| p.stat())
            .map_err(io::Error::other)?;
        Ok(Self {
            pid: stat.pid,
            start: stat.starttime,
        })
    }

    fn file_name(self) -> String {
        format!("{}-{}", self.pid, self.start)
    }

    fn from_file_name(name: &str) -> Option<Self> {
        let (pid, start) = name.split_once('-')?;
        Some(Self {
            pid: pid.parse().ok().filter(|p| *p > 0)?,
            start: start.parse().ok()?,
        })
    }

    /// Whether the owner may still run. Only a process /proc says is gone, or one that is a
    /// zombie (it runs no more guards), is dead: any other error reading it (no file handles
    /// left, a /proc that hides other users' processes) counts as alive, so its things stay.
    fn is_alive(self) -> bool {
        use procfs::{process::ProcState, ProcError};
        match procfs::process::Process::new(self.pid).and_then(|p| p.stat()) {
            Ok(stat) => {
                stat.starttime == self.start
                    && !matches!(stat.state(), Ok(ProcState::Zombie | ProcState::Dead))
            }
            Err(ProcError::NotFound(_)) => false,
            Err(_) => true,
        }
    }
}

/// What one sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    /// What dead runs left, now removed.
    pub removed: Vec<Resource>,
    /// What dead runs left and could not be removed (kept in their ledgers for the next
    /// sweep).
    pub failed: Vec<Resource>,
    /// Ledger lines that were refused, each with its file.
    pub refused: Vec<String>,
}

/// How many things this process recorded are still there, per ledger directory (see
/// [`Ledger::released`]). Held while a line is written, so the ledger is never removed between
/// a record and its count.
static HELD: Mutex<BTreeMap<PathBuf, usize>> = Mutex::new(BTreeMap::new());

/// A directory of ledgers.
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    /// The host's ([`LEDGER_DIR`]).
    pub fn host() -> Self {
        Self::at(Path::new(LEDGER_DIR))
    }

    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Holds the ledgers against a sweep while the caller creates something and records it
    /// (a shared `flock` on the directory): a sweep, which holds it exclusively, then sees
    /// either neither or both. Without a lock (it could not be taken) the lab goes on.
    pub fn hold(&self) -> Option<File> {
        self.lock(libc::LOCK_SH)
            .inspect_err(|err| {
                eprintln!("keel-lab: cannot lock {}: {err}", self.dir.display());
            })
            .ok()
            .flatten()
    }

    /// A `flock` (`op`) on the directory, made if missing. A sweep removes the directory
    /// while it holds it exclusively, so after waiting the lock is taken again when the
    /// directory it was taken on is no longer the one at the path. `None`: `LOCK_NB` and
    /// someone else holds it.
    fn lock(&self, op: libc::c_int) -> io::Result<Option<File>> {
        for _ in 0..10 {
            fs::create_dir_all(&self.dir)?;
            let dir = File::open(&self.dir)?;
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            while unsafe { libc::flock(dir.as_raw_fd(), op) } != 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(None),
                    _ => return Err(err),
                }
            }
            let locked = dir.metadata()?;
            let current = fs::metadata(&self.dir);
            if current.is_ok_and(|m| m.ino() == locked.ino() && m.dev() == locked.dev()) {
                return Ok(Some(dir));
            }
        }
        Err(io::Error::other("the directory kept being replaced"))
    }

    /// Writes `resource` into this process's ledger; `true` when it did, and then the caller
    /// calls [`Ledger::released`] once the thing is gone. Call it under [`Ledger::hold`],
    /// taken before the thing was made. A ledger that cannot be written costs only the sweep
    /// after a kill, so it is reported and the lab goes on.
    pub fn record(&self, resource: io::Result<Resource>) -> bool {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        let result = resource.and_then(|resource| {
            fs::create_dir_all(&self.dir)?;
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(Owner::me()?.file_name()))?;
            file.write_all(format!("{}\n", resource.line()).as_bytes())
        });
        match result {
            Ok(()) => {
                *held.entry(self.dir.clone()).or_default() += 1;
                true
            }
            Err(err) => {
                eprintln!(
                    "keel-lab: cannot record in {} what to remove after a kill: {err}",
                    self.dir.display()
                );
                false
            }
        }
    }

    /// One thing [`Ledger::record`] wrote down is gone. With the last one this process's
    /// ledger goes too, so a run that ends normally leaves no ledger behind (and no directory,
    /// unless another process is busy in it).
    pub fn released(&self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        let Some(count) = held.get_mut(&self.dir) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            held.remove(&self.dir);
            if let Ok(me) = Owner::me() {
                let _ = fs::remove_file(self.dir.join(me.file_name()));
            }
            // Not waiting: this may run in a guard's Drop while this process holds the
            // directory shared on another thread.
            if let Ok(Some(_exclusive)) = self.lock(libc::LOCK_EX | libc::LOCK_NB) {
                let _ = fs::remove_dir(&self.dir);
            }
        }
    }

    /// Hands `remove` each thing the ledgers of dead processes name that may go (see the
    /// module's rules), newest first; `remove` says whether it went. A dead ledger is removed
    /// once everything in it went, and rewritten with what did not.
    pub fn sweep_dead(&self, mut remove: impl FnMut(&Resource) -> bool) -> Swept {
        let mut swept = Swept::default();
        if !self.dir.exists() {
            return swept;
        }
        let _exclusive = match self.lock(libc::LOCK_EX) {
            Ok(lock) => lock,
            Err(err) => {
                swept
                    .refused
                    .push(format!("{}: cannot lock: {err}", self.dir.display()));
                return swept;
            }
        };
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return swept;
        };
        let mut live: Vec<Resource> = Vec::new();
        let mut dead: Vec<(PathBuf, Vec<Resource>)> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(owner) = entry.file_name().to_str().and_then(Owner::from_file_name) else {
                continue; // not a ledger: not ours to judge
            };
            let text = fs::read_to_string(&path).unwrap_or_default();
            let mut resources = Vec::new();
            for (i, line) in text.lines().enumerate() {
                match Resource::parse(i + 1, line) {
                    Ok(resource) => resources.push(resource),
                    Err(err) => swept.refused.push(format!("{}: {err}", path.display())),
                }
            }
            if owner.is_alive() {
                live.extend(resources);
            } else {
                dead.push((path, resources));
            }
        }
        for (path, resources) in dead {
            let mut kept = Vec::new();
            // Newest first: a cgroup (and the processes in it) before the namespaces they use.
            for resource in resources.iter().rev() {
                if !resource.still_there() || live.iter().any(|l| l.same_name(resource)) {
                    continue;
                }
                if remove(resource) {
                    swept.removed.push(resource.clone());
                } else {
                    swept.failed.push(resource.clone());
                    kept.push(resource.line());
                }
            }
            if kept.is_empty() {
                let _ = fs::remove_file(path);
            } else {
                kept.reverse();
                let _ = fs::write(path, kept.join("\n") + "\n");
            }
        }
        // Left as found: the directory goes when no ledger is left in it.
        let _ = fs::remove_dir(&self.dir);
        swept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_hostile_ones_are_refused() {
        let good = [
            Resource::Netns {
                name: "keel-1a-node".into(),
                inode: 4026532,
            },
            Resource::Cgroup {
                path: "/sys/fs/cgroup/keel-test-x".into(),
                inode: 77,
            },
            Resource::Cgroup {
                path: "/sys/fs/cgroup/unified/keel-test-y".into(),
                inode: 78,
            },
            Resource::Link {
                name: "keel1a".into(),
                ifindex: 12,
            },
        ];
        for resource in good {
            assert_eq!(Resource::parse(1, &resource.line()), Ok(resource));
        }
        for hostile in [
            "",
            "netns",
            "netns 1",
            "netns x keel-a",
            "netns 1 ../../etc",
            "netns 1 a/b",
            "netns 1 ..",
            "netns 1 with space",
            "cgroup 1 /sys/fs/cgroup/../../etc",
            "cgroup 1 /sys/fs/cgroup/system.slice",
            "cgroup 1 relative/keel-x",
            "cgroup 1 /etc/keel-x",
            "cgroup 1 /sys/fs/cgroup/keel-x/../init.scope",
            "cgroup 1 /sys/fs/cgroup/system.slice/keel-x",
            "cgroup 1 /sys/fs/cgroup/keel-x/keel-y",
            "netns 1 cni-1234",
            "link 2 eth0",
            "link 1 eth0/../x",
            "link 1 a-name-longer-than-15",
            "link 4294967296 keel1",
            "volume 1 /",
        ] {
            let refused = Resource::parse(3, hostile);
            assert!(refused.is_err(), "{hostile:?} was accepted: {refused:?}");
            let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.starts_with("line 3: "), "{message}");
        }
    }

    #[test]
    fn ledger_file_names_are_pid_and_start_time() {
        let owner = Owner { pid: 42, start: 9 };
        assert_eq!(Owner::from_file_name(&owner.file_name()), Some(owner));
        for name in ["42", "x-9", "42-x", "-9", "0-9", "42-9-1", ".tmp"] {
            assert_eq!(Owner::from_file_name(name), None, "{name}");
        }
        let me = Owner::me().expect("this process");
        assert!(me.is_alive());
        assert!(!Owner {
            start: me.start + 1,
            ..me
        }
        .is_alive());
    }

    #[test]
    fn a_zombie_owner_is_dead() {
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let pid = child.id() as i32;
        // Not reaped: once it exits it stays a zombie, start time and all.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let start = loop {
            let stat = procfs::process::Process::new(pid)
                .and_then(|p| p.stat())
                .expect("the child's stat");
            if matches!(stat.state(), Ok(procfs::process::ProcState::Zombie)) {
                break stat.starttime;
            }
            assert!(std::time::Instant::now() < deadline, "`true` did not exit");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(!Owner { pid, start }.is_alive());
        child.wait().expect("reaped");
        assert!(!Owner { pid, start }.is_alive(), "a reaped owner");
    }

    #[test]
    fn a_record_lands_in_this_process_s_ledger_which_goes_with_the_last_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        let ledger = Ledger::at(&sub);
        let link = Resource::Link {
            name: "keel1".into(),
            ifindex: 3,
        };
        let netns = Resource::Netns {
            name: "keel-x".into(),
            inode: 9,
        };
        assert!(ledger.record(Ok(link.clone())));
        assert!(!ledger.record(Err(io::Error::other("gone before it was recorded"))));
        assert!(ledger.record(Ok(netns.clone())));
        let file = sub.join(Owner::me().expect("me").file_name());
        let text = fs::read_to_string(&file).expect("the ledger");
        assert_eq!(text, format!("{}\n{}\n", link.line(), netns.line()));
        ledger.released();
        assert!(file.exists(), "one recorded thing is still there");
        ledger.released();
        assert!(!file.exists(), "the ledger outlived what it recorded");
        assert!(!sub.exists(), "the empty ledger directory stayed");
        // A release with nothing recorded does nothing.
        ledger.released();
    }
}
