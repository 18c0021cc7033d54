//! Removing what killed runs left: the namespaces, cgroups and links that dead processes'
//! ledgers ([`crate::ledger`]) still name, each by the guard that would have removed it.

use crate::{
    cgroup,
    ledger::{Ledger, Resource, Swept},
    netns,
};

/// Sweeps the host's ledgers.
pub fn sweep() -> Swept {
    sweep_ledger(&Ledger::host())
}

fn sweep_ledger(ledger: &Ledger) -> Swept {
    ledger.sweep_dead(remove)
}

/// Removes it as its guard would have; `true` once it is gone.
fn remove(resource: &Resource) -> bool {
    match resource {
        Resource::Netns { name, .. } => netns::delete(name),
        Resource::Cgroup { path, .. } => cgroup::remove(path),
        Resource::Link { name, .. } => netns::delete_link(name),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::{cgroup::cgroup2_mount, netns::ip, Cgroup, Netns};

    /// For real: namespaces and a cgroup (with a process in it) that a dead process recorded
    /// are removed; one replaced since, one a live run's ledger names and everything of a live
    /// owner are kept; bad lines are reported.
    #[test]
    fn what_a_dead_run_left_is_removed_and_what_live_runs_use_is_kept() {
        use std::process::Command;

        let id = crate::unique_id();
        let name = |what: &str| format!("keel-ledgertest-{id}-{what}");
        // Guards, so that the test leaves nothing whatever it finds.
        let _netns: Vec<crate::Netns> = ["gone", "replaced", "shared", "mine"]
            .iter()
            .map(|what| {
                ip(&["netns", "add", &name(what)]).expect("ip netns add");
                Netns::adopt(&name(what))
            })
            .collect();
        let cgroup_path = cgroup2_mount().expect("cgroup2").join(name("cg"));
        fs::create_dir(&cgroup_path).expect("mkdir cgroup");
        let _cgroup = Cgroup::adopt(&cgroup_path);
        let mut sleeper = Command::new("sleep").arg("300").spawn().expect("sleep");
        fs::write(cgroup_path.join("cgroup.procs"), sleeper.id().to_string()).expect("join");

        // A dead owner: a process that ran (a ledger is named `<pid>-<start time>`) and has
        // been killed and reaped.
        let mut owner = Command::new("sleep").arg("300").spawn().expect("sleep");
        let start = procfs::process::Process::new(owner.id() as i32)
            .and_then(|p| p.stat())
            .expect("the owner's stat")
            .starttime;
        let dead = format!("{}-{start}", owner.id());
        owner.kill().expect("kill");
        owner.wait().expect("reaped");

        let now = |what: &str| Resource::netns(&name(what)).expect("netns inode");
        let replaced = match now("replaced") {
            Resource::Netns { name, inode } => Resource::Netns {
                name,
                inode: inode + 1,
            },
            other => other,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let dead_lines = [
            now("gone").line(),
            replaced.line(),
            now("shared").line(),
            Resource::cgroup(&cgroup_path).expect("cgroup").line(),
            "netns 1 ../../etc".to_owned(),
        ];
        fs::write(dir.path().join(&dead), dead_lines.join("\n")).expect("dead");
        let ledger = Ledger::at(dir.path());
        // This process's own ledger: a live one.
        ledger.record(Ok(now("shared")));
        ledger.record(Ok(now("mine")));
        fs::write(dir.path().join("notes.txt"), "netns 1 x").expect("not a ledger");

        // A removal that fails keeps its line for the next sweep, and is not called removed.
        let failing = ledger.sweep_dead(|_| false);
        assert!(failing.removed.is_empty(), "{:?}", failing.removed);
        assert_eq!(failing.failed.len(), 2, "{:?}", failing.failed);
        let kept = fs::read_to_string(dir.path().join(&dead)).expect("the dead ledger stays");
        assert_eq!(
            kept,
            format!(
                "{}\n{}\n",
                now("gone").line(),
                Resource::cgroup(&cgroup_path).expect("cgroup").line()
            )
        );

        let swept = sweep_ledger(&ledger);

        let removed: Vec<String> = swept.removed.iter().map(ToString::to_string).collect();
        assert_eq!(
            removed,
            vec![
                format!("cgroup {}", cgroup_path.display()),
                format!("network namespace {}", name("gone")),
            ]
        );
        assert!(!crate::ledger::netns_path(&name("gone")).exists());
        assert!(!cgroup_path.exists());
        let status = sleeper.wait().expect("reaped");
        assert!(!status.success(), "the cgroup's process was killed");
        for kept in ["replaced", "shared", "mine"] {
            assert!(
                crate::ledger::netns_path(&name(kept)).exists(),
                "{kept} was removed"
            );
        }
        assert!(swept.failed.is_empty(), "{:?}", swept.failed);
        assert_eq!(failing.refused.len(), 1, "{:?}", failing.refused);
        assert!(
            failing.refused[0].contains("line 5"),
            "{:?}",
            failing.refused
        );
        assert!(!dir.path().join(&dead).exists(), "the dead ledger stays");
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "this process's ledger and the notes: {names:?}"
        );
        // Nothing more to do the second time.
        let again = sweep_ledger(&ledger);
        assert!(again.removed.is_empty(), "{:?}", again.removed);
    }
}
