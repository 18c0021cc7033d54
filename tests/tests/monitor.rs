//! `node-daemon monitor`: the datapath's events as they happen, from programs that report only
//! while a monitor listens.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    time::{Duration, Instant},
};

use keel_lab::Child;
use keel_tests::{connect, service_yaml, Run, Setup, TestResult, BACKEND_PORT, SERVICE_PORT, VIP};
use serde_json::Value;

/// A second service with no endpoints at all: every connect to it is refused.
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);

fn start_monitor(setup: &Setup, filters: &[&str]) -> Result<Child, Box<dyn std::error::Error>> {
    let mut command = Command::new(keel_lab::bin("node-daemon"));
    command
        .args(["monitor", "-o", "json", "--bpf-dir"])
        .arg(setup.daemon.bpf_dir())
        .args(filters);
    let mut monitor = Child::spawn("node-daemon monitor", command, &setup.lab.on_node(None))?;
    monitor.wait_for_line("listening for datapath events", Duration::from_secs(10))?;
    Ok(monitor)
}

/// The JSON events the monitor printed, once `count` have come (or after 10 s), plus a
/// moment for any that should not have come.
fn events(monitor: &Child, count: usize) -> Vec<Value> {
    let parse = || -> Vec<Value> {
        monitor
            .output()
            .iter()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while parse().len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    parse()
}

#[test]
fn the_monitor_streams_translations_and_drops_only_while_it_listens() -> TestResult {
    let setup = Setup::with_extra("monitor", &[], |_, _| {
        service_yaml("empty", EMPTY_VIP, SERVICE_PORT, BACKEND_PORT)
    })?;
    let empty = SocketAddrV4::new(EMPTY_VIP, SERVICE_PORT);
    // Nobody listens: these are never reported.
    assert_eq!(
        setup
            .connect(Run::Count(20))?
            .counts()
            .values()
            .sum::<usize>(),
        20
    );

    let monitor = start_monitor(&setup, &[])?;
    let served = setup.connect(Run::Count(10))?;
    let refused = connect(&setup.lab, setup.cgroup.path(), empty, Run::Count(3))?;
    assert_eq!(
        refused.counts().get("err:ECONNREFUSED"),
        Some(&3),
        "{:?}",
        refused.counts()
    );
    let seen = events(&monitor, 13);
    assert_eq!(seen.len(), 13, "exactly this run's connects: {seen:#?}");

    let translated: Vec<&Value> = seen.iter().filter(|e| e["kind"] == "translate").collect();
    assert_eq!(translated.len(), 10, "{seen:#?}");
    let backends = [
        SocketAddrV4::new(setup.a, BACKEND_PORT).to_string(),
        SocketAddrV4::new(setup.b, BACKEND_PORT).to_string(),
    ];
    for event in &translated {
        assert_eq!(event["path"], "connect", "{event}");
        assert_eq!(event["protocol"], "TCP", "{event}");
        assert_eq!(
            event["destination"],
            format!("{VIP}:{SERVICE_PORT}"),
            "{event}"
        );
        let backend = event["backend"].as_str().unwrap_or_default();
        assert!(backends.iter().any(|b| b == backend), "{event}");
        assert!(event["netns_cookie"].as_u64().is_some(), "{event}");
    }
    // Each connection's backend, as the client saw it, is the one the monitor reported.
    let by_name = |name: &str| {
        if name == "a" {
            &backends[0]
        } else {
            &backends[1]
        }
    };
    let mut reported: Vec<&str> = translated
        .iter()
        .filter_map(|e| e["backend"].as_str())
        .collect();
    let mut answered: Vec<&str> = served
        .attempts
        .iter()
        .filter_map(|(_, r)| r.as_deref().ok())
        .map(|name| by_name(name).as_str())
        .collect();
    reported.sort_unstable();
    answered.sort_unstable();
    assert_eq!(reported, answered);

    let dropped: Vec<&Value> = seen.iter().filter(|e| e["kind"] == "drop").collect();
    assert_eq!(dropped.len(), 3, "{seen:#?}");
    for event in &dropped {
        assert_eq!(event["reason"], "no-backend", "{event}");
        assert_eq!(event["destination"], empty.to_string(), "{event}");
        assert!(
            event["service_id"].as_u64().is_some_and(|id| id > 0),
            "{event}"
        );
        assert!(event.get("backend").is_none(), "{event}");
    }

    // Stopped: it says goodbye, and the programs stop reporting at once.
    monitor.signal(libc::SIGINT);
    let (code, _) = monitor.finish(Duration::from_secs(10))?;
    assert_eq!(code, Some(0));

    // Refused while nobody listens: the goodbye reset the heartbeat, so these are not
    // waiting in the ring buffer for the next monitor (they would be for 3 s without it).
    connect(&setup.lab, setup.cgroup.path(), empty, Run::Count(4))?;

    // Filters: only the empty service's drops pass.
    let filtered = start_monitor(&setup, &["--type", "drop", "--service", &empty.to_string()])?;
    setup.connect(Run::Count(5))?;
    connect(&setup.lab, setup.cgroup.path(), empty, Run::Count(2))?;
    let seen = events(&filtered, 2);
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(
        seen.iter()
            .all(|e| e["kind"] == "drop" && e["reason"] == "no-backend"),
        "{seen:#?}"
    );
    Ok(())
}

#[test]
fn a_filter_that_can_never_match_is_refused_by_flag() -> TestResult {
    let output = Command::new(keel_lab::bin("node-daemon"))
        .args([
            "monitor",
            "--reason",
            "meteor-strike",
            "--bpf-dir",
            "/nonexistent",
        ])
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--reason \"meteor-strike\": not one of no-backend"),
        "{stderr}"
    );
    Ok(())
}

/// The per-packet path reports too: a client beyond the node reaching a ClusterIP through
/// tc is a translation with its own address and port; a datagram to a service without
/// endpoints is a drop.
#[test]
fn the_monitor_sees_the_packet_path() -> TestResult {
    use keel_lab::{lab::UPLINK, Cgroup, Lab, NodePlacement};
    use keel_tests::{finish_client, slice_yaml, start_client_at, write_manifest, Client, Daemon};
    keel_tests::require_root();
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    let pod = lab.add_pod("a")?;
    pod.serve(BACKEND_PORT)?;
    let pod_addr = pod.addr();
    let backend = SocketAddrV4::new(pod_addr, BACKEND_PORT);
    let remote = lab.add_remote("remote")?;
    let remote_addr = remote.addr();
    let remote_at = remote.placement();
    let cgroup = Cgroup::create(&format!("keel-test-montc-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    write_manifest(
        manifests.path(),
        "web.yaml",
        &service_yaml("web", VIP, SERVICE_PORT, BACKEND_PORT),
    )?;
    write_manifest(
        manifests.path(),
        "web-endpoints.yaml",
        &slice_yaml("web", BACKEND_PORT, &[(pod_addr, true)]),
    )?;
    write_manifest(
        manifests.path(),
        "empty.yaml",
        &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: empty\nspec:\n  clusterIP: {EMPTY_VIP}\n  ports:\n  - name: dns\n    port: 53\n    protocol: UDP\n"),
    )?;
    let daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &["--tc-interface", UPLINK],
    )?;
    let mut command = Command::new(keel_lab::bin("node-daemon"));
    command
        .args(["monitor", "-o", "json", "--bpf-dir"])
        .arg(daemon.bpf_dir());
    let mut monitor = Child::spawn("node-daemon monitor", command, &lab.on_node(None))?;
    monitor.wait_for_line("listening for datapath events", Duration::from_secs(10))?;

    let run = finish_client(start_client_at(
        &remote_at,
        SocketAddrV4::new(VIP, SERVICE_PORT),
        Client::Tcp { check_peer: true },
        Run::Count(5),
    )?)?;
    assert_eq!(run.counts().get("a"), Some(&5), "{:?}", run.counts());
    finish_client(start_client_at(
        &remote_at,
        SocketAddrV4::new(EMPTY_VIP, 53),
        Client::UdpFrom {
            source_port: 5353,
            timeout_ms: 200,
        },
        Run::Count(2),
    )?)?;
    let seen = events(&monitor, 7);
    let translated: Vec<&Value> = seen.iter().filter(|e| e["kind"] == "translate").collect();
    assert_eq!(
        translated.len(),
        5,
        "one per connection, not per packet: {seen:#?}"
    );
    for event in &translated {
        assert_eq!(event["path"], "tc-ingress", "{event}");
        assert_eq!(event["backend"], backend.to_string(), "{event}");
        let client = event["client"].as_str().unwrap_or_default();
        assert!(client.starts_with(&format!("{remote_addr}:")), "{event}");
    }
    let dropped: Vec<&Value> = seen.iter().filter(|e| e["kind"] == "drop").collect();
    assert_eq!(dropped.len(), 2, "{seen:#?}");
    for event in &dropped {
        assert_eq!(event["reason"], "no-backend", "{event}");
        assert_eq!(event["protocol"], "UDP", "{event}");
        assert_eq!(event["client"], format!("{remote_addr}:5353"), "{event}");
    }
    Ok(())
}
