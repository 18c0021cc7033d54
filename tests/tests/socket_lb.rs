//! The eBPF socket load balancer, end to end: a real node daemon, real programs attached to a
//! real cgroup, backends in pod namespaces, a client in keel's cgroup.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use keel_lab::{Cgroup, Lab, NodePlacement};
use keel_tests::{
    connect, require_root, service_yaml, slice_yaml, write_manifest, Daemon, Run, TestResult,
};
use tempfile::TempDir;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const SERVICE_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;

/// One daemon, two backend pods `a` and `b`, one service. Fields drop in order: the daemon
/// stops and cleans up before its cgroup and lab go.
struct Setup {
    daemon: Daemon,
    cgroup: Cgroup,
    lab: Lab,
    manifests: TempDir,
    a: Ipv4Addr,
    b: Ipv4Addr,
}

impl Setup {
    fn new(test: &str) -> Result<Self, Box<dyn std::error::Error>> {
        require_root();
        let mut lab = Lab::new(NodePlacement::OwnNetns)?;
        let a = serving_pod(&mut lab, "a")?;
        let b = serving_pod(&mut lab, "b")?;
        let cgroup = Cgroup::create(&format!("keel-test-{test}-{}", keel_lab::unique_id()))?;
        let manifests = tempfile::tempdir()?;
        write_manifest(
            manifests.path(),
            "web.yaml",
            &service_yaml("web", VIP, SERVICE_PORT, BACKEND_PORT),
        )?;
        write_manifest(
            manifests.path(),
            "web-endpoints.yaml",
            &slice_yaml("web", BACKEND_PORT, &[(a, true), (b, true)]),
        )?;
        let daemon = Daemon::start(&lab, manifests.path(), cgroup.path())?;
        Ok(Self {
            daemon,
            cgroup,
            lab,
            manifests,
            a,
            b,
        })
    }

    fn connect(&self, run: Run) -> Result<keel_tests::Attempts, Box<dyn std::error::Error>> {
        connect(
            &self.lab,
            self.cgroup.path(),
            SocketAddrV4::new(VIP, SERVICE_PORT),
            run,
        )
    }

    fn set_endpoints(&self, endpoints: &[(Ipv4Addr, bool)]) -> std::io::Result<()> {
        write_manifest(
            self.manifests.path(),
            "web-endpoints.yaml",
            &slice_yaml("web", BACKEND_PORT, endpoints),
        )
    }
}

fn serving_pod(lab: &mut Lab, name: &str) -> Result<Ipv4Addr, Box<dyn std::error::Error>> {
    let pod = lab.add_pod(name)?;
    pod.serve(BACKEND_PORT)?;
    Ok(pod.addr())
}

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
        metrics.contains("keel_service_ports{mode=\"ebpf\"} 1"),
        "{metrics}"
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
    let pins = std::path::Path::new("/sys/fs/bpf/keel");
    assert!(
        !pins.exists() || std::fs::read_dir(pins)?.next().is_none(),
        "no pins left"
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
    Ok(())
}
