//! More Services than the per-packet path has room for (issue 20): the ones that fit answer
//! through tc, the others are reported by name (log and metric), and later changes — a removal
//! that frees room, a new endpoint — still apply instead of the sync failing forever.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use keel_lab::{lab::UPLINK, Cgroup, Lab, NodePlacement, Placement};
use keel_tests::{
    finish_client, require_root, slice_yaml, start_client_at, write_manifest, Client, Daemon, Run,
    TestResult, BACKEND_PORT, SERVICE_PORT,
};

/// Room for this many service ports (or Maglev tables).
const ROOM: u8 = 3;
const SERVICES: u8 = 5;

fn vip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 0, 10 + i)
}

/// Service `web{i}` (one TCP port, `http`) and its EndpointSlice.
fn service(i: u8, endpoints: &[(Ipv4Addr, bool)]) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web{i}\nspec:\n  clusterIP: {}\n  ports:\n  - name: http\n    port: {SERVICE_PORT}\n    targetPort: {BACKEND_PORT}\n---\n{}",
        vip(i),
        slice_yaml(&format!("web{i}"), BACKEND_PORT, endpoints)
    )
}

/// Backend name → answers, over `count` connections from `at` to service `i`.
fn answers(
    at: &Placement,
    i: u8,
    count: u64,
) -> Result<Vec<(String, usize)>, Box<dyn std::error::Error>> {
    let to = SocketAddrV4::new(vip(i), SERVICE_PORT);
    let run = finish_client(start_client_at(
        at,
        to,
        Client::Tcp { check_peer: true },
        Run::Count(count),
    )?)?;
    Ok(run.counts().into_iter().collect())
}

/// The value of the unprogrammed gauge with `reason="capacity"`.
fn unprogrammed(daemon: &Daemon) -> Result<Option<i64>, Box<dyn std::error::Error>> {
    let metrics = daemon.metrics()?;
    Ok(metrics
        .lines()
        .find(|l| {
            l.starts_with("keel_proxy_service_ports_unprogrammed{")
                && l.contains("reason=\"capacity\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok()))
}

#[test]
fn services_beyond_the_service_ids_are_reported_and_later_changes_still_apply() -> TestResult {
    scenario(&["--max-services", "3"], "service ids")
}

#[test]
fn services_beyond_the_maglev_map_are_reported_and_later_changes_still_apply() -> TestResult {
    scenario(
        &["--max-services", "64", "--max-maglev-services", "3"],
        "the Maglev map",
    )
}

/// Five services with room for three; `room_flags` make the room, `what` is the reason the
/// daemon gives.
fn scenario(room_flags: &[&str], what: &str) -> TestResult {
    require_root();
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    let mut pods = Vec::new();
    for name in ["a", "b", "c"] {
        let pod = lab.add_pod(name)?;
        pod.serve(BACKEND_PORT)?;
        pods.push(pod.addr());
    }
    let remote = lab.add_remote("remote")?;
    let remote_at = remote.placement();
    let cgroup = Cgroup::create(&format!("keel-test-maglev-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    let ab = [(pods[0], true), (pods[1], true)];
    for i in 1..=SERVICES {
        write_manifest(manifests.path(), &format!("web{i}.yaml"), &service(i, &ab))?;
    }
    let daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &[&["--tc-interface", UPLINK][..], room_flags].concat(),
    )?;

    // The Maglev map is sized from the limits: 3 tables of 512 chunks.
    let maglev = aya::maps::MapData::from_pin(daemon.bpf_dir().join(keel_common::MAGLEV_MAP))?;
    assert_eq!(maglev.info()?.max_entries(), u32::from(ROOM) * 512);

    // The first three (in frontend order) answer through tc, from both backends.
    for i in 1..=ROOM {
        let counts = answers(&remote_at, i, 20)?;
        assert_eq!(
            counts
                .iter()
                .filter(|(n, _)| n == "a" || n == "b")
                .map(|(_, c)| c)
                .sum::<usize>(),
            20,
            "web{i}: {counts:?}"
        );
    }

    // Removing web1 frees room: web4 goes in by the next sync, web1 stops answering.
    std::fs::remove_file(manifests.path().join("web1.yaml"))?;
    daemon.wait_for_log(&["synced", "service_ports=4"], Duration::from_secs(5))?;
    let counts = answers(&remote_at, 4, 20)?;
    assert_eq!(
        counts
            .iter()
            .filter(|(n, _)| n == "a" || n == "b")
            .map(|(_, c)| c)
            .sum::<usize>(),
        20,
        "web4 after web1 left: {counts:?}"
    );
    let counts = answers(&remote_at, 1, 1)?;
    assert!(
        counts.iter().all(|(n, _)| n.starts_with("err:")),
        "web1 is gone: {counts:?}"
    );

    // web5 still has no room: reported by name, in the log and on /metrics.
    let line = daemon.wait_for_log(
        &[
            "not programmed",
            "service=default/web5:http",
            "capacity",
            what,
        ],
        Duration::from_secs(2),
    )?;
    assert!(line.contains("WARN"), "{line}");
    assert_eq!(unprogrammed(&daemon)?, Some(1));

    // A new endpoint on a programmed service applies too.
    write_manifest(
        manifests.path(),
        "web2.yaml",
        &service(2, &[(pods[2], true)]),
    )?;
    daemon.wait_for_log(&["synced", "backends=7"], Duration::from_secs(5))?;
    let counts = answers(&remote_at, 2, 20)?;
    assert_eq!(counts, [("c".to_owned(), 20)], "web2 moved to c");
    assert_eq!(unprogrammed(&daemon)?, Some(1));
    Ok(())
}

/// A restart whose limits would size the Maglev map differently keeps the pinned map (and
/// counts with its real size) instead of refusing to start.
#[test]
fn a_restart_keeps_the_pinned_maglev_map_and_its_room() -> TestResult {
    require_root();
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    let pod = lab.add_pod("a")?;
    pod.serve(BACKEND_PORT)?;
    let backends = [(pod.addr(), true)];
    // The remote host brings the uplink tc attaches to.
    let _remote = lab.add_remote("remote")?;
    let cgroup = Cgroup::create(&format!("keel-test-maglev-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    for i in 1..=ROOM {
        write_manifest(
            manifests.path(),
            &format!("web{i}.yaml"),
            &service(i, &backends),
        )?;
    }
    let mut daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &[
            "--tc-interface",
            UPLINK,
            "--max-services",
            "3",
            "--max-maglev-services",
            "2",
        ],
    )?;
    daemon.wait_for_log(
        &[
            "not programmed",
            "service=default/web3:http",
            "the Maglev map",
        ],
        Duration::from_secs(2),
    )?;
    daemon.stop();
    // By default, 3 services would get 3 tables: the pinned map has room for 2.
    daemon.restart_with(&["--tc-interface", UPLINK, "--max-services", "3"])?;
    daemon.wait_for_log(
        &["keeping the pinned Maglev map's size"],
        Duration::from_secs(2),
    )?;
    let maglev = aya::maps::MapData::from_pin(daemon.bpf_dir().join(keel_common::MAGLEV_MAP))?;
    assert_eq!(maglev.info()?.max_entries(), 2 * 512);
    // The restarted daemon adopts what is there (nothing rewritten) and still reports web3.
    daemon.wait_for_log(
        &[
            "not programmed",
            "service=default/web3:http",
            "the Maglev map",
            "room for 2",
        ],
        Duration::from_secs(2),
    )?;
    daemon.wait_for_log(
        &["synced", "service_ports=3", "written=0"],
        Duration::from_secs(2),
    )?;
    Ok(())
}
