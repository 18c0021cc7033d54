//! The eBPF socket load balancer, end to end: a real node daemon, real programs attached to a
//! real cgroup, backends in pod namespaces, a client in keel's cgroup.

use std::time::Duration;

use keel_tests::{
    service_yaml, write_manifest, Run, Setup, TestResult, BACKEND_PORT, SERVICE_PORT, VIP,
};

#[test]
fn connections_spread_over_ready_backends_and_follow_readiness() -> TestResult {
    let setup = Setup::new("spread")?;

    let run = setup.connect(Run::Count(1000))?;
    let counts = run.counts();
    let (a, b) = (
        counts.get("a").copied().unwrap_or(0),
        counts.get("b").copied().unwrap_or(0),
    );
    assert_eq!(
        a + b,
        1000,
        "every connection reaches a backend: {counts:?}"
    );
    for share in [a, b] {
        assert!(
            (350..=650).contains(&share),
            "each backend gets 35-65%: {counts:?}"
        );
    }

    // b stops being ready: within 1 s of the file change no new connection goes to b.
    setup.set_endpoints(&[(setup.a, true), (setup.b, false)])?;
    let run = setup.connect(Run::ForMs(1500))?;
    let last_b = run
        .attempts
        .iter()
        .filter(|(_, r)| r.as_deref() == Ok("b"))
        .map(|(ms, _)| *ms)
        .max();
    assert!(
        last_b.is_none_or(|ms| ms < 1000),
        "b still got connections {last_b:?} ms after the change"
    );
    let late: Vec<_> = run.attempts.iter().filter(|(ms, _)| *ms >= 1000).collect();
    assert!(!late.is_empty(), "the client kept connecting");
    assert!(
        late.iter().all(|(_, r)| r.as_deref() == Ok("a")),
        "after 1 s only a answers: {:?}",
        run.counts()
    );

    // No ready endpoint: connects are refused at once, not left to time out.
    setup.set_endpoints(&[(setup.a, false), (setup.b, false)])?;
    std::thread::sleep(Duration::from_millis(500));
    let run = setup.connect(Run::Count(20))?;
    assert_eq!(
        run.counts().get("err:ECONNREFUSED"),
        Some(&20),
        "{:?}",
        run.counts()
    );
    assert_eq!(run.attempts.len(), 20);
    assert!(
        run.attempts.iter().all(|(ms, _)| *ms < 500),
        "refusals are immediate: {:?}",
        run.attempts
    );
    Ok(())
}

#[test]
fn deleting_the_service_makes_connects_fail() -> TestResult {
    let setup = Setup::new("delete")?;
    assert_eq!(
        setup
            .connect(Run::Count(10))?
            .attempts
            .iter()
            .filter(|(_, r)| r.is_ok())
            .count(),
        10
    );

    std::fs::remove_file(setup.manifests.path().join("web.yaml"))?;
    setup
        .daemon
        .wait_for_log(&["synced", "service_ports=0"], Duration::from_secs(2))?;
    let run = setup.connect(Run::Count(10))?;
    // The ClusterIP is no longer translated; the blackhole route makes the connect fail
    // locally instead of letting the packet leave the node.
    assert_eq!(run.attempts.len(), 10);
    assert!(
        run.attempts.iter().all(|(_, r)| r.is_err()),
        "{:?}",
        run.counts()
    );
    Ok(())
}

#[test]
fn malformed_manifest_is_reported_and_the_last_good_state_stays() -> TestResult {
    let setup = Setup::new("malformed")?;
    let broken =
        service_yaml("web", VIP, SERVICE_PORT, BACKEND_PORT).replace("port: 80", "port: eighty");
    write_manifest(setup.manifests.path(), "web.yaml", &broken)?;
    // File, line and field are all in the report.
    let line = setup.daemon.wait_for_log(
        &["web.yaml", "line 10", "spec.ports[0].port"],
        Duration::from_secs(2),
    )?;
    assert!(line.contains("keeping its last good version"), "{line}");

    let run = setup.connect(Run::Count(50))?;
    assert_eq!(run.attempts.len(), 50);
    assert!(
        run.attempts.iter().all(|(_, r)| r.is_ok()),
        "service still served: {:?}",
        run.counts()
    );
    let metrics = setup.daemon.metrics()?;
    assert!(
        metrics.contains("keel_manifest_files_rejected 1"),
        "{metrics}"
    );

    // Garbage that is not even YAML is reported the same way.
    write_manifest(
        setup.manifests.path(),
        "web-endpoints.yaml",
        "endpoints: [\n  - {",
    )?;
    setup
        .daemon
        .wait_for_log(&["web-endpoints.yaml", "line"], Duration::from_secs(2))?;
    let run = setup.connect(Run::Count(50))?;
    assert_eq!(
        run.counts().len(),
        2,
        "both backends still in use: {:?}",
        run.counts()
    );
    Ok(())
}

#[test]
fn cleanup_removes_everything_keel_put_on_the_node() -> TestResult {
    let mut setup = Setup::new("cleanup")?;
    let netns = setup
        .lab
        .node_netns()
        .ok_or("the test lab has its own node namespace")?;
    let cgroup = setup.cgroup.path().to_owned();
    let attached = keel_lab::netns::run("bpftool", &["cgroup", "show", &cgroup.to_string_lossy()])?;
    let attached = String::from_utf8_lossy(&attached.stdout).to_string();
    // `bpftool cgroup show`: "ID  AttachType  AttachFlags  Name"
    let program_id = attached
        .lines()
        .find(|l| l.contains("keel_connect4"))
        .and_then(|l| l.split_whitespace().next())
        .ok_or_else(|| {
            format!(
                "keel_connect4 is not attached to {}: {attached}",
                cgroup.display()
            )
        })?
        .to_owned();
    let routes = netns.ip(&["route", "show", "table", "all", "type", "blackhole"])?;
    assert!(
        String::from_utf8_lossy(&routes.stdout).contains("10.96.0.0/12"),
        "blackhole route installed"
    );
    let metrics = setup.daemon.metrics()?;
    assert!(
        metrics.contains("keel_service_ports{mode=\"ebpf\"} 2"),
        "{metrics}"
    );

    assert!(
        std::fs::read_dir(setup.daemon.bpf_dir())?.next().is_some(),
        "the running daemon pinned its maps in {}",
        setup.daemon.bpf_dir().display()
    );
    assert_eq!(
        setup.daemon.stop(),
        Some(0),
        "SIGTERM stops the daemon cleanly"
    );
    // The route outlives the daemon on purpose: ClusterIPs must not leak while it restarts.
    let routes = netns.ip(&["route", "show", "table", "all", "type", "blackhole"])?;
    assert!(String::from_utf8_lossy(&routes.stdout).contains("10.96.0.0/12"));

    let (code, output) = setup.daemon.cleanup()?;
    assert_eq!(code, Some(0), "cleanup succeeded: {output:?}");
    let routes = netns.ip(&["route", "show", "table", "all", "type", "blackhole"])?;
    assert!(
        routes.stdout.is_empty(),
        "route removed: {}",
        String::from_utf8_lossy(&routes.stdout)
    );
    assert!(!cgroup.exists(), "cgroup removed");
    assert!(
        keel_lab::netns::run("bpftool", &["prog", "show", "id", &program_id]).is_err(),
        "program {program_id} was unloaded"
    );
    let attached = keel_lab::netns::run("bpftool", &["cgroup", "show", &cgroup.to_string_lossy()]);
    assert!(attached.is_err() || !String::from_utf8_lossy(&attached?.stdout).contains("keel_"));
    // The test daemon's own pin directory (never the host's /sys/fs/bpf/keel): it held the
    // maps and links while the daemon ran, and holds nothing after the cleanup.
    let pins = setup.daemon.bpf_dir();
    assert!(
        !pins.exists() || std::fs::read_dir(pins)?.next().is_none(),
        "no pins left in {}",
        pins.display()
    );

    // Cleaning up twice is fine.
    assert_eq!(setup.daemon.cleanup()?.0, Some(0));

    // The lab leaves no namespace behind.
    let node_name = netns.name().to_owned();
    drop(setup);
    let listed = keel_lab::netns::ip(&["netns", "list"])?;
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(&node_name),
        "netns {node_name} removed"
    );
    Ok(())
}

#[test]
fn bad_command_lines_are_refused_with_the_flag_named() -> TestResult {
    let output = std::process::Command::new(keel_lab::bin("node-daemon"))
        .args([
            "--manifests",
            "/nonexistent",
            "--service-cidr",
            "10.96.0.0/40",
        ])
        .output()?;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--service-cidr") && stderr.contains("40"),
        "{stderr}"
    );

    let output = std::process::Command::new(keel_lab::bin("node-daemon"))
        .args(["--manifests", "/tmp", "--proxy-mode", "carrier-pigeon"])
        .output()?;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--proxy-mode"));
    let output = std::process::Command::new(keel_lab::bin("node-daemon"))
        .args(["--manifests", "/tmp", "--min-sync-interval", "5"])
        .output()?;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--min-sync-interval") && stderr.contains("needs a unit"),
        "{stderr}"
    );

    // Limits whose combination makes no sense fail before the host is touched.
    for (args, wanted) in [
        (
            &["--max-services", "64", "--max-maglev-services", "65"][..],
            "--max-maglev-services 65 is more than --max-services 64",
        ),
        (
            &["--max-maglev-services", "20000"][..],
            "at most 16384 services fit",
        ),
    ] {
        let output = std::process::Command::new(keel_lab::bin("node-daemon"))
            .args(["--manifests", "/nonexistent"])
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(wanted), "{stderr}");
    }
    let output = std::process::Command::new(keel_lab::bin("node-daemon"))
        .args(["--manifests", "/tmp", "--maglev-table-size", "16000"])
        .output()?;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--maglev-table-size"));
    Ok(())
}
