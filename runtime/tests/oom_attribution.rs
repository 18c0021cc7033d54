//! Why the runtime attributes an OOM kill by the victim's memory cgroup counter and not by
//! the cgroup the OOM program reports: a real OOM in a parent cgroup, where the task that
//! runs into the limit is not the one the kernel kills.
//!
//! `parent` (memory.max 64 MiB) holds two leaves. `holder` keeps 44 MiB; `grower` then
//! reads up to 36 MiB. When `grower` crosses the parent's limit, the kernel runs the OOM
//! killer in `grower`'s context and kills the biggest task, `holder`'s. This is the shape
//! of a global OOM (or a pod-level limit): the old rule, "the cgroup of the task running
//! the OOM killer", named `grower`.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use keel_common::OomEvent;
use keel_lab::cgroup::Cgroup;
use keel_runtime::oom::{self, OomCandidate};

/// The test's memory cgroups: a parent with the limit and two leaves, on cgroup2 where it
/// holds the memory controller, else on a hybrid host's v1 memory hierarchy (with the
/// same-named cgroup2 directories, which give the tasks the cgroup ids the program reports).
struct Tree {
    unified: Cgroup,
    /// The v1 memory hierarchy's parent, when memory is accounted there.
    memory_v1: Option<PathBuf>,
}

const LIMIT: u64 = 64 << 20;

impl Tree {
    fn create(name: &str) -> Self {
        let unified = Cgroup::create(name).expect("a cgroup2 directory");
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let memory_v1 = v1
            .join("memory.limit_in_bytes")
            .exists()
            .then(|| v1.join(name));
        match &memory_v1 {
            Some(parent) => {
                fs::create_dir_all(parent).expect("a v1 memory cgroup");
                fs::write(parent.join("memory.limit_in_bytes"), LIMIT.to_string()).expect("limit");
                // With swap accounting, no swapping past the limit either.
                let _ = fs::write(
                    parent.join("memory.memsw.limit_in_bytes"),
                    LIMIT.to_string(),
                );
            }
            None => {
                let root = unified.path().parent().expect("below the mount");
                fs::write(root.join("cgroup.subtree_control"), "+memory")
                    .expect("+memory at the root");
                fs::write(unified.path().join("memory.max"), LIMIT.to_string())
                    .expect("memory.max");
                let _ = fs::write(unified.path().join("memory.swap.max"), "0");
                fs::write(unified.path().join("cgroup.subtree_control"), "+memory")
                    .expect("+memory");
            }
        }
        for leaf in ["holder", "grower"] {
            fs::create_dir(unified.path().join(leaf)).expect("leaf");
            if let Some(parent) = &memory_v1 {
                fs::create_dir(parent.join(leaf)).expect("v1 leaf");
            }
        }
        Self { unified, memory_v1 }
    }

    /// The leaf's cgroup2 directory (its inode is the id the OOM program reports).
    fn unified(&self, leaf: &str) -> PathBuf {
        self.unified.path().join(leaf)
    }

    /// Where the leaf's memory is accounted.
    fn memory(&self, leaf: &str) -> PathBuf {
        match &self.memory_v1 {
            Some(parent) => parent.join(leaf),
            None => self.unified(leaf),
        }
    }

    fn id(&self, leaf: &str) -> u64 {
        fs::metadata(self.unified(leaf))
            .map(|m| m.ino())
            .unwrap_or(0)
    }

    /// `(head; sleep) | tail` in the leaf: GNU tail keeps a newline-free input whole until
    /// EOF, so the pipeline holds `mib` MiB of anonymous memory while `sleep` runs.
    fn hold_memory(&self, leaf: &str, mib: u32) -> std::io::Result<Child> {
        let mut join = format!(
            "echo $$ > {}",
            self.unified(leaf).join("cgroup.procs").display()
        );
        if self.memory_v1.is_some() {
            join += &format!(
                " && echo $$ > {}",
                self.memory(leaf).join("cgroup.procs").display()
            );
        }
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{join} && (head -c {mib}M /dev/zero; exec sleep 60) | tail > /dev/null"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }

    /// The kernel's count of OOM kills in the leaf (`memory.events` or v1 `memory.oom_control`).
    fn oom_kills(&self, leaf: &str) -> u64 {
        let file = if self.memory_v1.is_some() {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        fs::read_to_string(self.memory(leaf).join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap_or(0)
    }

    fn usage_mib(&self, leaf: &str) -> u64 {
        let file = if self.memory_v1.is_some() {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        fs::read_to_string(self.memory(leaf).join(file))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
            >> 20
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_victims_cgroup_counts_the_kill_not_the_cgroup_that_ran_the_oom_killer() {
    // The unified Cgroup's Drop also removes the same-named v1 directories, leaves first.
    let tree = Tree::create(&format!("keel-oom-attribution-{}", std::process::id()));
    let (events, mut received) = tokio::sync::broadcast::channel::<OomEvent>(16);
    let watcher = oom::start(events).expect("the OOM program loads");

    // What the worker knows before the kill: each container's count when its run started.
    let seen = (tree.oom_kills("holder"), tree.oom_kills("grower"));
    let mut held = tree.hold_memory("holder", 44).expect("holder starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tree.usage_mib("holder") < 40 {
        assert!(Instant::now() < deadline, "holder never reached 40 MiB");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut growing = tree.hold_memory("grower", 36).expect("grower starts");
    let (holder_id, grower_id) = (tree.id("holder"), tree.id("grower"));

    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match received.recv().await {
                // Another OOM elsewhere on the host is not this test's.
                Ok(event) if event.cgroup_id == grower_id || event.cgroup_id == holder_id => {
                    return event
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("the OOM watcher stopped: {e}"),
            }
        }
    })
    .await
    .expect("an OOM kill within 20 s");

    println!(
        "kill of pid {} reported from cgroup {} (grower {grower_id}, holder {holder_id}); oom_kill counts: holder {}, grower {}",
        event.pid,
        event.cgroup_id,
        tree.oom_kills("holder"),
        tree.oom_kills("grower")
    );
    // The OOM killer ran in the context of the task that hit the limit...
    assert_eq!(event.cgroup_id, grower_id, "the reporting task's cgroup");
    // ...and killed the other cgroup's task, which is where the kernel counts the kill.
    assert_eq!(
        tree.oom_kills("holder"),
        1,
        "the victim's cgroup counts the kill"
    );
    assert_eq!(
        tree.oom_kills("grower"),
        0,
        "the cgroup that ran the OOM killer counts none"
    );

    // The runtime's attribution, on the kernel's counters: the holder. The old rule (the
    // event's cgroup) named the grower.
    let candidates = [
        OomCandidate {
            name: "grower".into(),
            kills_seen: Some(seen.1),
            kills_now: Some(tree.oom_kills("grower")),
            pid: None,
        },
        OomCandidate {
            name: "holder".into(),
            kills_seen: Some(seen.0),
            kills_now: Some(tree.oom_kills("holder")),
            pid: None,
        },
    ];
    assert_eq!(
        oom::victim(&candidates, event.pid).map(|c| c.name.as_str()),
        Some("holder")
    );

    watcher.abort();
    // The parent's Drop kills what is left in its subtree (cgroup.kill) and removes it.
    for child in [&mut held, &mut growing] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
