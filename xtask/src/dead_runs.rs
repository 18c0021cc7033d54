//! What killed test, bench and run processes left behind: processes still carrying a dead
//! run's tag, bpffs pins, and the namespaces, cgroups and links their lab guards never removed
//! (`keel_lab::ledger`).

/// Removes what dead runs left, says what it removed and returns how many things that was.
/// Run before a test, bench or lab run builds anything, so that it never starts beside
/// another's stale programs, namespaces or cgroups, and after the tests, whose processes are
/// all gone by then, to find what a test left.
pub fn sweep() -> usize {
    let mut count = 0;
    // First the processes (a test's daemon, member or etcd outside any lab cgroup), so that
    // nothing is still using what goes next.
    for process in crate::leftovers::sweep_dead_runs() {
        println!("killed a process of a dead run: {process}");
        count += 1;
    }
    for prefix in ["keel-test", "keel-bench"] {
        for dir in keel_lab::sweep_dead_pins(prefix) {
            println!("removed the pins of a dead run: {}", dir.display());
            count += 1;
        }
    }
    let swept = keel_lab::dead_runs::sweep();
    for resource in &swept.removed {
        println!("removed what a dead run left: {resource}");
    }
    for line in &swept.refused {
        println!("a ledger line was refused (nothing removed for it): {line}");
    }
    count + swept.removed.len()
}
