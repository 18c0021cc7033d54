//! OOM kills seen in the kernel: the `oom/mark_victim` program reports each kill through its
//! ring buffer, and the container's status says `OOMKilled` (137) within a moment of it.

use std::{process::Command, time::Duration};

use keel_tests::{
    pods::{container_status, pod_yaml, PodNode},
    TestResult,
};

const KILLS: usize = 20;

/// A container that allocates past its limit, over and over: every run ends `OOMKilled`,
/// the delay from the kernel's choice of victim to the status is measured for each, and
/// the count is on /metrics and in the pod's events.
#[test]
fn oom_kills_are_reported_as_oomkilled() -> TestResult {
    let node = PodNode::start(
        "oom",
        &[
            "--restart-backoff",
            "50ms",
            "--restart-backoff-max",
            "100ms",
        ],
    )?;
    let yaml = format!(
        "{}    resources:\n      limits: {{memory: 32Mi}}\n",
        pod_yaml(
            "hog",
            "",
            &[("app", "exec dd if=/dev/zero of=/dev/null bs=64M count=1")]
        )
    );
    node.apply("hog.yaml", &yaml)?;
    let pod = node.wait_pod("hog", Duration::from_secs(90), |p| {
        container_status(p, "app")["restartCount"].as_u64() >= Some(KILLS as u64)
    })?;
    let last = &container_status(&pod, "app")["lastState"]["terminated"];
    assert_eq!(last["reason"], "OOMKilled", "{last}");
    assert_eq!(last["exitCode"], 137, "{last}");

    // The daemon logs the delay from mark_victim's timestamp to the OOMKilled status.
    // The last kill's ring-buffer event may trail its status by a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut latencies_us = node.daemon.log_numbers("container OOMKilled", "latency_us");
    while latencies_us.len() < KILLS && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        latencies_us = node.daemon.log_numbers("container OOMKilled", "latency_us");
    }
    assert!(
        latencies_us.len() >= KILLS,
        "every kill came through the ring buffer: {latencies_us:?}\n{}",
        node.daemon.log().join("\n")
    );
    latencies_us.sort_unstable();
    let percentile = |p: f64| latencies_us[((latencies_us.len() - 1) as f64 * p).round() as usize];
    let (p50, p99) = (percentile(0.5), percentile(0.99));
    // Reported for the record (the issue asks for p50/p99 over 20 kills).
    println!(
        "OOMKilled latency over {} kills: p50 {} µs, p99 {} µs",
        latencies_us.len(),
        p50,
        p99
    );
    // Reported, not asserted: a latency goal belongs in a benchmark, and on two busy cores
    // one kill in twenty waited 1.4 s once, which says nothing about correctness.

    let metrics = node.daemon.metrics()?;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("keel_container_oom_kills_total{namespace=\"default\",pod=\"hog\",container=\"app\"}"))
        .ok_or_else(|| format!("no OOM metric:\n{metrics}"))?;
    let count: u64 = line.rsplit(' ').next().unwrap_or("0").parse()?;
    assert!(count >= KILLS as u64, "{line}");
    let described = Command::new(keel_lab::bin("node-daemon"))
        .args(["describe", "hog", "--state-dir"])
        .arg(node.state.path())
        .output()?;
    let described = String::from_utf8_lossy(&described.stdout);
    assert!(described.contains("OOMKilled"), "{described}");
    assert!(
        described.contains("Memory cgroup out of memory: killed process"),
        "{described}"
    );
    Ok(())
}
