//! The eBPF socket load balancer, end to end: a real node daemon, real programs attached to a
//! real cgroup, backends in pod namespaces, a client in keel's cgroup.

use std::{net::SocketAddrV4, time::Duration};

use keel_tests::{
    finish_client, service_yaml, write_manifest, Client, Run, Setup, TestResult, BACKEND_PORT,
    SERVICE_PORT, VIP,
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

/// Issue 20: a connected UDP socket is translated once, at connect(), and keeps its backend
/// as its peer. When that backend is replaced (and still answers, as a pod shutting down
/// would), only destroying the socket moves the client: its next exchange fails, it connects
/// again, and reaches the new backend within that one retry.
#[test]
fn a_connected_udp_socket_to_a_removed_backend_is_destroyed() -> TestResult {
    let setup = Setup::new("udp-sock")?;
    connected_udp_socket_moves_on(&setup)
        .map_err(|error| format!("{error}\ndaemon log:\n{}", setup.daemon.log().join("\n")).into())
}

fn connected_udp_socket_moves_on(setup: &Setup) -> TestResult {
    let synced = || {
        setup
            .daemon
            .log()
            .iter()
            .filter(|l| l.contains("synced") && l.contains("service_ports="))
            .count()
    };
    let wait_for_sync = |after: usize| -> TestResult {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while synced() <= after {
            if std::time::Instant::now() > deadline {
                return Err(format!("no sync after sync {after}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    };
    let before = synced();
    setup.set_endpoints(&[(setup.a, true), (setup.b, false)])?;
    wait_for_sync(before)?;

    // One socket, connected once (to a, the only backend), asking every 100 ms for 8 s (the
    // switch comes after 1 s; the rest is margin for a slow sync under emulation): on
    // the node, and in pod b's namespace (keel's cgroup reaches into pod sandboxes too, and
    // every namespace of its processes is swept).
    let kept = Client::UdpKept { timeout_ms: 1000 };
    let paced = Run::Paced {
        for_ms: 8000,
        interval_ms: 100,
    };
    let on_node = setup.start_client(kept, SERVICE_PORT, paced)?;
    let pod_b = setup
        .lab
        .pods()
        .find(|p| p.addr() == setup.b)
        .ok_or("pod b")?;
    let in_pod = keel_tests::start_client_at(
        &keel_lab::Placement {
            netns: Some(pod_b.netns().path()),
            cgroup: Some(setup.cgroup.path().to_owned()),
        },
        SocketAddrV4::new(VIP, SERVICE_PORT),
        kept,
        paced,
    )?;
    std::thread::sleep(Duration::from_millis(1000));
    let before = synced();
    setup.set_endpoints(&[(setup.a, false), (setup.b, true)])?;
    wait_for_sync(before)?;
    for (where_, client) in [("node", on_node), ("pod b", in_pod)] {
        let run = finish_client(client)?;
        moved_to_b(where_, &run)?;
    }

    let destroyed = setup
        .daemon
        .log_numbers("destroyed stale UDP sockets", "destroyed");
    println!("destroyed per sweep: {destroyed:?}");
    assert_eq!(
        destroyed.last(),
        Some(&2),
        "destroyed per sweep: {destroyed:?}"
    );
    let namespaces = setup
        .daemon
        .log_numbers("destroyed stale UDP sockets", "namespaces");
    assert_eq!(
        namespaces.last(),
        Some(&2),
        "namespaces swept: {namespaces:?}"
    );
    let metrics = setup.daemon.metrics()?;
    assert!(
        metrics.contains("keel_udp_sockets_destroyed_total{mode=\"ebpf\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_udp_socket_destroy_failures_total{mode=\"ebpf\"} 0"),
        "{metrics}"
    );
    Ok(())
}

/// The exchanges of one kept socket: a, a, …, at most one failed exchange (the destroyed
/// socket), then b to the end.
fn moved_to_b(where_: &str, run: &keel_tests::Attempts) -> TestResult {
    println!("{where_}: exchanges on the kept socket: {:?}", run.attempts);
    let answers: Vec<&Result<String, String>> = run.attempts.iter().map(|(_, r)| r).collect();
    let first_other = answers
        .iter()
        .position(|r| r.as_deref() != Ok("a"))
        .ok_or_else(|| {
            format!(
                "{where_}: the socket still talks to the removed backend: {:?}",
                run.counts()
            )
        })?;
    assert!(
        first_other >= 3,
        "{where_}: a answered first: {:?}",
        run.attempts
    );
    let rest = &answers[first_other..];
    let failed = rest.iter().filter(|r| r.is_err()).count();
    assert!(
        failed <= 1,
        "{where_}: more than one retry to reach b: {:?}",
        run.attempts
    );
    assert!(
        rest.iter().all(|r| r.is_err() || r.as_deref() == Ok("b")),
        "{where_}: after the switch only b answers: {:?}",
        run.attempts
    );
    assert!(
        rest.iter().filter(|r| r.as_deref() == Ok("b")).count() >= 5,
        "{where_}: b answered the client's later exchanges: {:?}",
        run.attempts
    );
    if let Some(Err(errno)) = rest.first() {
        // The kernel aborts the socket (ECONNABORTED on a pending receive) and disconnects
        // it (EDESTADDRREQ on the next send).
        assert!(
            errno == "ECONNABORTED" || errno == "EDESTADDRREQ",
            "{where_}: {:?}",
            run.attempts
        );
    }
    Ok(())
}
