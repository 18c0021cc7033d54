//! The rest of the socket datapath, end to end: UDP both ways, `getpeername`, restarts that
//! traffic does not notice, and what the kernel maps report.

use std::{process::Command, time::Duration};

use keel_tests::{finish_client, Client, Run, Setup, TestResult, SERVICE_PORT, VIP};

#[test]
fn udp_replies_come_from_the_cluster_ip() -> TestResult {
    let setup = Setup::new("udp")?;
    for connected in [false, true] {
        let client =
            setup.start_client(Client::Udp { connected }, SERVICE_PORT, Run::Count(200))?;
        let counts = finish_client(client)?.counts();
        // FROM:<backend> would mean the reply was not translated back and a resolver would
        // have dropped it.
        let answered = counts.get("a").unwrap_or(&0) + counts.get("b").unwrap_or(&0);
        assert_eq!(answered, 200, "connected={connected}: {counts:?}");
        assert!(
            counts.contains_key("a") && counts.contains_key("b"),
            "both backends used: {counts:?}"
        );
    }
    Ok(())
}

#[test]
fn getpeername_shows_the_cluster_ip() -> TestResult {
    let setup = Setup::new("peer")?;
    let client = setup.start_client(
        Client::Tcp { check_peer: true },
        SERVICE_PORT,
        Run::Count(100),
    )?;
    let counts = finish_client(client)?.counts();
    assert_eq!(counts.values().sum::<usize>(), 100, "{counts:?}");
    assert!(
        counts.keys().all(|k| k == "a" || k == "b"),
        "every peer name was the ClusterIP: {counts:?}"
    );
    Ok(())
}

#[test]
fn a_daemon_restart_interrupts_no_connection() -> TestResult {
    let mut setup = Setup::new("restart")?;
    let client = setup.start_client(
        Client::Tcp { check_peer: true },
        SERVICE_PORT,
        Run::ForMs(2500),
    )?;
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(setup.daemon.stop(), Some(0));
    std::thread::sleep(Duration::from_millis(400)); // no daemon at all for a while
    setup.daemon.restart()?;
    let run = finish_client(client)?;
    let counts = run.counts();
    assert!(
        !counts.is_empty(),
        "the client connected during the restart"
    );
    assert!(
        counts.keys().all(|k| k == "a" || k == "b"),
        "zero failed connects across the restart: {counts:?}"
    );
    assert!(
        run.attempts.len() > 50,
        "the client kept connecting: {counts:?}"
    );

    // The new daemon adopted the pinned maps: nothing needed rewriting.
    let synced = setup
        .daemon
        .wait_for_log(&["synced"], Duration::from_secs(1))?;
    assert!(
        synced.contains("written=0"),
        "adoption rewrote entries: {synced}"
    );
    // And its programs replaced the old ones instead of stacking on them.
    let cgroup = setup.cgroup.path().to_string_lossy().to_string();
    let attached = keel_lab::netns::run("bpftool", &["cgroup", "show", &cgroup])?;
    let attached = String::from_utf8_lossy(&attached.stdout).to_string();
    assert_eq!(attached.matches("keel_connect4").count(), 1, "{attached}");
    assert_eq!(
        attached.matches("keel_").count(),
        4,
        "four socket programs: {attached}"
    );
    Ok(())
}

#[test]
fn services_command_and_metrics_show_the_kernel_counters() -> TestResult {
    let setup = Setup::new("counters")?;
    setup.connect(Run::Count(30))?;
    // No ready backend: refusals are counted too.
    setup.set_endpoints(&[(setup.a, false), (setup.b, false)])?;
    setup
        .daemon
        .wait_for_log(&["synced", "backends=0"], Duration::from_secs(2))?;
    let refused = setup.connect(Run::Count(5))?;
    assert_eq!(refused.counts().get("err:ECONNREFUSED"), Some(&5));

    let output = Command::new(keel_lab::bin("node-daemon"))
        .args(["services", "-o", "json", "--bpf-dir"])
        .arg(setup.daemon.bpf_dir())
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let tcp = dump["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["protocol"] == "TCP"))
        .ok_or("no TCP service in the dump")?;
    assert_eq!(tcp["vip"], VIP.to_string());
    assert_eq!(tcp["port"], SERVICE_PORT);
    assert_eq!(tcp["connections"], 30, "{tcp}");
    assert_eq!(tcp["refused"], 5, "{tcp}");
    assert_eq!(tcp["backends"].as_array().map(Vec::len), Some(0), "{tcp}");
    // The maps' kernel memory, service state apart from flow state (the conntrack maps alone
    // take megabytes at any size keel creates them).
    let memory = &dump["memory"];
    let service_bytes = memory["service_state_bytes"].as_u64().unwrap_or(0);
    let flow_bytes = memory["flow_state_bytes"].as_u64().unwrap_or(0);
    assert!(service_bytes > 0 && flow_bytes > 1 << 20, "{memory}");

    let table = Command::new(keel_lab::bin("node-daemon"))
        .args(["services", "--bpf-dir"])
        .arg(setup.daemon.bpf_dir())
        .output()?;
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.contains("10.96.0.10:80/TCP")
            && table.contains("connects refused")
            && table.contains("service state (services, backends, Maglev): ")
            && table.contains("flow state (conntrack, SYN, affinity, reverse): "),
        "{table}"
    );

    let metrics = setup.daemon.metrics()?;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("keel_service_connections_total") && l.contains("default/web:http"))
        .ok_or_else(|| format!("no connection counter for default/web:http:\n{metrics}"))?;
    assert!(line.ends_with(" 30"), "{line}");
    assert!(
        metrics.contains("keel_service_refused_total{service=\"default/web:http\""),
        "{metrics}"
    );
    Ok(())
}

#[test]
fn services_command_refuses_a_directory_without_keel_maps() {
    let output = Command::new(keel_lab::bin("node-daemon"))
        .args(["services", "--bpf-dir", "/nonexistent/keel"])
        .output()
        .expect("node-daemon runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/keel"), "{stderr}");
}

#[test]
fn session_affinity_keeps_a_client_on_one_backend() -> TestResult {
    let setup = Setup::new("affinity")?;
    let sticky = keel_tests::service_yaml("web", VIP, SERVICE_PORT, keel_tests::BACKEND_PORT)
        + "  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 30\n";
    keel_tests::write_manifest(setup.manifests.path(), "web.yaml", &sticky)?;
    setup
        .daemon
        .wait_for_log(&["synced", "written="], Duration::from_secs(2))?;
    std::thread::sleep(Duration::from_millis(200));

    let counts = setup.connect(Run::Count(200))?.counts();
    assert_eq!(
        counts.len(),
        1,
        "every connection of one client reaches one backend: {counts:?}"
    );
    let (backend, _) = counts.iter().next().ok_or("no connection")?;
    assert!(backend == "a" || backend == "b", "{counts:?}");

    // The remembered backend leaves the service: the client moves on, and sticks again.
    let other = if backend == "a" { setup.b } else { setup.a };
    setup.set_endpoints(&[(other, true)])?;
    setup
        .daemon
        .wait_for_log(&["synced", "backends=2"], Duration::from_secs(2))?;
    let counts = setup.connect(Run::Count(50))?.counts();
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(
        !counts.contains_key(backend.as_str()),
        "the old backend is not reused: {counts:?}"
    );
    Ok(())
}

#[test]
fn a_pod_reaches_itself_through_its_own_cluster_ip() -> TestResult {
    let setup = Setup::new("hairpin")?;
    // Only pod a backs the service, and the client runs inside pod a (and keel's cgroup).
    setup.set_endpoints(&[(setup.a, true)])?;
    setup
        .daemon
        .wait_for_log(&["synced", "backends=2"], Duration::from_secs(2))?;
    let mut pods = setup.lab.pods();
    let pod_a = pods.find(|p| p.name() == "a").ok_or("no pod a")?;
    let inside_a = keel_lab::Placement {
        netns: Some(pod_a.netns().path()),
        cgroup: Some(setup.cgroup.path().to_owned()),
    };
    let to = std::net::SocketAddrV4::new(VIP, SERVICE_PORT);
    let tcp = finish_client(keel_tests::start_client_at(
        &inside_a,
        to,
        Client::Tcp { check_peer: true },
        Run::Count(20),
    )?)?;
    assert_eq!(tcp.counts().get("a"), Some(&20), "{:?}", tcp.counts());
    let udp = finish_client(keel_tests::start_client_at(
        &inside_a,
        to,
        Client::Udp { connected: false },
        Run::Count(20),
    )?)?;
    assert_eq!(udp.counts().get("a"), Some(&20), "{:?}", udp.counts());
    Ok(())
}

#[test]
fn a_full_map_reports_what_does_not_fit_and_keeps_what_works() -> TestResult {
    // Room for exactly the two ports of the test service.
    let setup = Setup::with_args("full", &["--max-services", "2"])?;
    let extra = keel_tests::service_yaml("extra", std::net::Ipv4Addr::new(10, 96, 0, 11), 80, 8080);
    keel_tests::write_manifest(setup.manifests.path(), "extra.yaml", &extra)?;
    let report = setup.daemon.wait_for_log(
        &[
            "not programmed",
            "service=default/extra:http",
            "service ids",
        ],
        Duration::from_secs(2),
    )?;
    assert!(report.contains("room for 2"), "{report}");
    // Capacity is not transient: the sync of the rest succeeded and nothing is retried in a
    // loop (the extra service gets its chance when the table changes).
    wait_for_unprogrammed(&setup, 2)?;
    let log = setup.daemon.log();
    assert!(
        !log.iter()
            .any(|l| l.contains("sync failed") || l.contains("will retry")),
        "{log:#?}"
    );
    // The service that fitted is untouched.
    let counts = setup.connect(Run::Count(20))?.counts();
    assert_eq!(
        counts.get("a").unwrap_or(&0) + counts.get("b").unwrap_or(&0),
        20,
        "{counts:?}"
    );
    // Once the extra service goes, nothing is left out.
    std::fs::remove_file(setup.manifests.path().join("extra.yaml"))?;
    wait_for_unprogrammed(&setup, 0)?;
    Ok(())
}

/// Waits until /metrics counts `count` service ports left out for want of room.
fn wait_for_unprogrammed(setup: &Setup, count: i64) -> TestResult {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let metrics = setup.daemon.metrics()?;
        let value = metrics
            .lines()
            .find(|l| {
                l.starts_with("keel_proxy_service_ports_unprogrammed{")
                    && l.contains("reason=\"capacity\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok());
        if value == Some(count) {
            return Ok(());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {count} unprogrammed:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
