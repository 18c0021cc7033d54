//! The conntrack map's size through the daemon (issue 20): `--conntrack-max` sizes it, a
//! restart sized from memory keeps a pinned map of another size, a bad size is refused naming
//! the flag; and the conntrack GC's metrics are on `/metrics`.

use std::time::{Duration, Instant};

use keel_lab::{Cgroup, Lab, NodePlacement};
use keel_tests::{require_root, Daemon, TestResult};

fn ct_max_entries(daemon: &Daemon) -> Result<u32, Box<dyn std::error::Error>> {
    let map = aya::maps::MapData::from_pin(daemon.bpf_dir().join(keel_common::CT_MAP))?;
    Ok(map.info()?.max_entries())
}

#[test]
fn conntrack_max_sizes_the_map_and_a_restart_keeps_the_pinned_size() -> TestResult {
    require_root();
    let lab = Lab::new(NodePlacement::OwnNetns)?;
    let cgroup = Cgroup::create(&format!("keel-test-ctsize-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    let mut daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &["--conntrack-max", "4096"],
    )?;
    assert_eq!(ct_max_entries(&daemon)?, 4096);

    // The GC sweeps at start, then every 30 s: its figures appear on /metrics.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics = daemon.metrics()?;
        if metrics.contains("keel_conntrack_entries{state=\"established\"} 0")
            || Instant::now() > deadline
        {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        metrics.contains("keel_conntrack_entries{state=\"established\"} 0")
            && metrics.contains("keel_conntrack_gc_deleted_total 0"),
        "{metrics}"
    );

    // Sized from memory this time: the pinned map (and its flows) stays as it is.
    daemon.stop();
    daemon.restart_with(&[])?;
    daemon.wait_for_log(
        &["keeping the pinned conntrack map's size"],
        Duration::from_secs(2),
    )?;
    assert_eq!(ct_max_entries(&daemon)?, 4096);

    daemon.stop();
    let refused = daemon.restart_with(&["--conntrack-max", "10"]);
    assert!(refused.is_err(), "a 10-entry conntrack map was accepted");
    let log = daemon.log().join("\n");
    assert!(log.contains("--conntrack-max 10 is out of range"), "{log}");
    Ok(())
}
