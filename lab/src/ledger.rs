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
    fs,
    io::{self, Write},
    os::unix::fs::MetadataExt,
    path::{Component, Path, PathBuf},
    sync::Mutex,
};

use thiserror::Error;

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
        let inode = fs::metadata(Path::new("/run/netns").join(name))?.ino();
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
            "netns" if is_plain_name(name) => Ok(Self::Netns {
                name: name.to_owned(),
                inode: id,
            }),
            "netns" => Err(bad("a namespace name must be one plain path component")),
            "cgroup" => {
                let path = PathBuf::from(name);
                let plain = path.is_absolute()
                    && path
                        .components()
                        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
                let keel = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("keel-"));
                let in_cgroupfs = path.starts_with("/sys/fs/cgroup/");
                if plain && keel && in_cgroupfs {
                    Ok(Self::Cgroup { path, inode: id })
                } else {
                    Err(bad(
                        "a cgroup must be a keel-* directory under /sys/fs/cgroup",
                    ))
                }
            }
            "link" => {
                let ifindex = u32::try_from(id).map_err(|_| bad("an ifindex is 32 bits"))?;
                if is_plain_name(name) && name.len() <= 15 {
                    Ok(Self::Link {
                        name: name.to_owned(),
                        ifindex,
                    })
                } else {
                    Err(bad("a link name is one plain word of at most 15 bytes"))
                }
            }
            _ => Err(bad("unknown kind (netns, cgroup or link)")),
        }
    }

    /// Whether what the line names is still there and is the thing recorded.
    fn still_there(&self) -> bool {
        match self {
            Self::Netns { name, inode } => {
                fs::metadata(Path::new("/run/netns").join(name)).is_ok_and(|m| m.ino() == *inode)
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
    let text = fs::read_to_string(Path::new("/sys/class/net").join(name).join("ifindex"))?;
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

    /// Whether the owner still runs: a zombie runs no more guards.
    fn is_alive(self) -> bool {
        procfs::process::Process::new(self.pid)
            .and_then(|p| p.stat())
            .is_ok_and(|stat| {
                stat.starttime == self.start
                    && !matches!(
                        stat.state(),
                        Ok(procfs::process::ProcState::Zombie | procfs::process::ProcState::Dead)
                    )
            })
    }
}

/// What one sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    /// What dead runs left, now removed.
    pub removed: Vec<Resource>,
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

    /// Writes `resource` into this process's ledger; `true` when it did, and then the caller
    /// calls [`Ledger::released`] once the thing is gone. A ledger that cannot be written
    /// costs only the sweep after a kill, so it is reported and the lab goes on.
    pub fn record(&self, resource: io::Result<Resource>) -> bool {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        let result = resource.and_then(|resource| {
            let path = self.dir.join(Owner::me()?.file_name());
            let open = || {
                fs::create_dir_all(&self.dir)?;
                fs::OpenOptions::new().create(true).append(true).open(&path)
            };
            // A sweep removes the directory when it is empty: once more if it did meanwhile.
            let mut file = open().or_else(|_| open())?;
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
    /// ledger goes too, so a run that ends normally leaves no ledger behind.
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
            let _ = fs::remove_dir(&self.dir);
        }
    }

    /// Hands `remove` each thing the ledgers of dead processes name that may go (see the
    /// module's rules), newest first, and removes those ledgers.
    pub fn sweep_dead(&self, mut remove: impl FnMut(&Resource)) -> Swept {
        let mut swept = Swept::default();
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
            // Newest first: a cgroup (and the processes in it) before the namespaces they use.
            for resource in resources.iter().rev() {
                if resource.still_there() && !live.iter().any(|l| l.same_name(resource)) {
                    remove(resource);
                    swept.removed.push(resource.clone());
                }
            }
            let _ = fs::remove_file(path);
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
