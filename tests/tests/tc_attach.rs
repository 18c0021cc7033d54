//! How the per-packet programs hold on to an interface across daemons. On classic tc (every
//! kernel before 6.6, and `--enable-tcx=false`) a filter is not a file that can be pinned: it
//! stays until deleted, a SIGKILLed daemon's included. keel keeps one filter per direction at
//! a fixed priority and handle, which a new daemon replaces and `--cleanup` deletes.

use std::{net::SocketAddrV4, process::Command, time::Duration};

use keel_lab::{lab::UPLINK, Cgroup, Lab, NodePlacement, Placement};
use keel_tests::{
    finish_client, require_root, slice_yaml, start_client_at, write_manifest, Client, Daemon, Run,
    TestResult, BACKEND_PORT, SERVICE_PORT, VIP,
};

/// The tc programs on the uplink, as `bpftool net` lists them: `(kind, name)`, e.g.
/// `("clsact/ingress", "keel_tc_in")` for a classic filter, `("tcx/ingress", …)` for a link.
fn attached(lab: &Lab) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let mut command = Command::new("bpftool");
    command.args(["-j", "net", "show", "dev", UPLINK]);
    let (code, lines) = keel_lab::Child::spawn("bpftool", command, &lab.on_node(None))?
        .finish(Duration::from_secs(10))?;
    if code != Some(0) {
        return Err(format!("bpftool net show failed ({code:?}): {lines:?}").into());
    }
    let json: serde_json::Value = serde_json::from_str(&lines.join("\n"))?;
    let mut programs = Vec::new();
    for entry in json.as_array().into_iter().flatten() {
        for program in entry["tc"].as_array().into_iter().flatten() {
            programs.push((
                program["kind"].as_str().unwrap_or_default().to_owned(),
                program["name"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    programs.sort();
    Ok(programs)
}

fn classic_pair() -> Vec<(String, String)> {
    vec![
        ("clsact/egress".to_owned(), "keel_tc_out".to_owned()),
        ("clsact/ingress".to_owned(), "keel_tc_in".to_owned()),
    ]
}

/// Twenty TCP connections from beyond the node to the ClusterIP, every one answered.
fn serves(remote: &Placement) -> TestResult {
    let run = finish_client(start_client_at(
        remote,
        SocketAddrV4::new(VIP, SERVICE_PORT),
        Client::Tcp { check_peer: true },
        Run::Count(20),
    )?)?;
    let answered: usize = run.counts().values().sum();
    assert_eq!(answered, 20, "{:?}", run.counts());
    Ok(())
}

#[test]
fn classic_tc_filters_are_replaced_by_the_next_daemon_and_removed_by_cleanup() -> TestResult {
    require_root();
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    let pod = lab.add_pod("a")?;
    pod.serve(BACKEND_PORT)?;
    let backends = vec![(pod.addr(), true)];
    let remote = lab.add_remote("remote")?;
    let remote_at = remote.placement();
    let cgroup = Cgroup::create(&format!("keel-test-tcattach-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    write_manifest(
        manifests.path(),
        "web.yaml",
        &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: {VIP}\n  ports:\n  - name: http\n    port: {SERVICE_PORT}\n    targetPort: {BACKEND_PORT}\n"),
    )?;
    write_manifest(
        manifests.path(),
        "web-endpoints.yaml",
        &slice_yaml("web", BACKEND_PORT, &backends),
    )?;
    let mut daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &["--tc-interface", UPLINK, "--enable-tcx=false"],
    )?;
    assert_eq!(
        attached(&lab)?,
        classic_pair(),
        "one classic filter per direction"
    );
    serves(&remote_at)?;

    // SIGKILL: nothing of the daemon's runs, the filters stay and keep translating.
    daemon.kill();
    assert_eq!(attached(&lab)?, classic_pair(), "after SIGKILL");
    serves(&remote_at)?;

    // A new daemon replaces them in place: still exactly one per direction.
    daemon.restart()?;
    assert_eq!(attached(&lab)?, classic_pair(), "after a restart");
    serves(&remote_at)?;

    // A graceful stop leaves them too, like the pinned links of tcx.
    daemon.stop();
    assert_eq!(attached(&lab)?, classic_pair(), "after SIGTERM");

    let (code, output) = daemon.cleanup()?;
    assert_eq!(code, Some(0), "{output:?}");
    assert!(
        output
            .iter()
            .any(|l| l.contains("removed keel's classic tc filters")),
        "{output:?}"
    );
    assert_eq!(attached(&lab)?, Vec::new(), "after --cleanup");
    Ok(())
}

/// By default the kernel is asked for tcx; one that has it (6.6+) gets links, not filters.
#[test]
fn tcx_is_probed_not_guessed() -> TestResult {
    require_root();
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    // The remote host is what gives the node its uplink.
    lab.add_remote("remote")?;
    let cgroup = Cgroup::create(&format!("keel-test-tcx-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    let daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &["--tc-interface", UPLINK],
    )?;
    // tcx came with Linux 6.6: the test's own expectation, from the release it runs on.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    // Debian 12's bpftool (7.1) does not list tcx links; their pins tell.
    let pins: Vec<String> = std::fs::read_dir(daemon.bpf_dir())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let pinned = |program: &str| {
        let path =
            keel_proxy::ebpf::pins::link_path(daemon.bpf_dir(), &format!("{program}_{UPLINK}"));
        path.file_name()
            .is_some_and(|name| pins.iter().any(|p| name == p.as_str()))
    };
    if version >= (6, 6) {
        assert_eq!(
            attached(&lab)?,
            Vec::new(),
            "no classic filter: {:?}",
            daemon.log()
        );
        assert!(pinned("keel_tc_in") && pinned("keel_tc_out"), "{pins:?}");
    } else {
        assert_eq!(attached(&lab)?, classic_pair(), "{:?}", daemon.log());
        assert!(!pinned("keel_tc_in") && !pinned("keel_tc_out"));
    }
    Ok(())
}
