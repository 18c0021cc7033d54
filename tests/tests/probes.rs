//! Probes with Kubernetes semantics on real pods: liveness restarts, readiness driving the
//! Service's endpoints in the kernel, startup gating.

use std::{net::SocketAddrV4, process::Command, time::Duration};

use keel_tests::{
    finish_client,
    pods::{container_status, is_running, pod_yaml, PodNode},
    start_client, Client, Run, TestResult,
};

const LONG: Duration = Duration::from_secs(30);

/// `node-daemon exec POD -c app -- CMD`, which must succeed.
fn exec(node: &PodNode, pod: &str, command: &[&str]) -> TestResult {
    let (code, output) = node.exec(pod, "app", command)?;
    if code != Some(0) {
        return Err(format!("exec {command:?} in {pod}: {code:?} {output}").into());
    }
    Ok(())
}

fn events(node: &PodNode, pod: &str) -> Result<String, Box<dyn std::error::Error>> {
    let output = Command::new(keel_lab::bin("node-daemon"))
        .args(["describe", pod, "--state-dir"])
        .arg(node.state.path())
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// An HTTP liveness probe that starts failing restarts the container, again and again.
#[test]
fn failing_liveness_probe_restarts_the_container() -> TestResult {
    let node = PodNode::start("probe-liveness", &["--restart-backoff", "100ms"])?;
    let yaml = format!(
        "{}    ports: [{{name: http, containerPort: 8080}}]\n    livenessProbe:\n      httpGet: {{path: /healthz, port: http}}\n      periodSeconds: 1\n      failureThreshold: 2\n",
        pod_yaml(
            "sick",
            "",
            &[("app", "mkdir -p /www; echo ok > /www/healthz; (sleep 2; rm /www/healthz) & exec httpd -f -p 8080 -h /www")]
        )
    );
    node.apply("sick.yaml", &yaml)?;
    let pod = node.wait_pod("sick", LONG, |p| {
        container_status(p, "app")["restartCount"].as_u64() >= Some(2) && is_running(p, "app")
    })?;
    let last = &container_status(&pod, "app")["lastState"]["terminated"];
    assert!(
        [137, 143].contains(&last["exitCode"].as_i64().unwrap_or(0)),
        "{last}"
    );
    let described = events(&node, "sick")?;
    assert!(
        described.contains("Liveness probe failed: HTTP probe failed with statuscode: 404"),
        "{described}"
    );
    assert!(
        described.contains("Container app failed liveness probe, will be restarted"),
        "{described}"
    );
    assert!(described.contains("Liveness:"), "{described}");
    Ok(())
}

/// Readiness drives the Service: a pod whose exec probe fails leaves the ClusterIP's
/// backends and comes back when it passes; a deleted pod leaves before it is signalled.
/// A client looping through the ClusterIP meanwhile sees no failure.
#[test]
fn readiness_moves_pods_in_and_out_of_the_service() -> TestResult {
    let node = PodNode::start("probe-readiness", &[])?;
    node.apply(
        "service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: 10.96.0.60\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n",
    )?;
    for name in ["web-a", "web-b"] {
        let yaml = format!(
            "{}    ports: [{{name: http, containerPort: 8080}}]\n    readinessProbe:\n      exec: {{command: [test, -f, /tmp/ready]}}\n      periodSeconds: 1\n      failureThreshold: 1\n",
            pod_yaml(name, "", &[("app", &format!("touch /tmp/ready; mkdir -p /www; echo {name} > /www/index.html; exec httpd -f -p 8080 -h /www"))])
        )
        .replace("app: web-a", "app: web")
        .replace("app: web-b", "app: web");
        node.apply(&format!("{name}.yaml"), &yaml)?;
    }
    for name in ["web-a", "web-b"] {
        node.wait_pod(name, LONG, |p| container_status(p, "app")["ready"] == true)?;
    }
    node.daemon
        .wait_for_log(&["synced service_ports=1 backends=2"], LONG)?;
    let vip = SocketAddrV4::new("10.96.0.60".parse()?, 80);
    let client = start_client(
        &node.lab,
        node.cgroup.path(),
        vip,
        Client::Tcp { check_peer: false },
        Run::Paced {
            for_ms: 9_000,
            interval_ms: 2,
        },
    )?;
    std::thread::sleep(Duration::from_millis(1_000));
    exec(&node, "web-a", &["rm", "/tmp/ready"])?;
    node.wait_pod("web-a", LONG, |p| {
        container_status(p, "app")["ready"] == false
    })?;
    node.daemon
        .wait_for_log(&["synced service_ports=1 backends=1"], LONG)?;
    std::thread::sleep(Duration::from_millis(2_000));
    exec(&node, "web-a", &["touch", "/tmp/ready"])?;
    node.wait_pod("web-a", LONG, |p| {
        container_status(p, "app")["ready"] == true
    })?;
    std::thread::sleep(Duration::from_millis(1_500));
    // Deleting a pod takes it out of the service before it is stopped.
    node.remove("web-b.yaml")?;
    let attempts = finish_client(client)?;
    node.wait_gone("web-b", LONG)?;

    let counts = attempts.counts();
    let failed: Vec<_> = attempts
        .attempts
        .iter()
        .filter(|(_, r)| r.is_err())
        .collect();
    assert!(
        failed.is_empty(),
        "no failed request: {counts:?} {failed:?}\n{}",
        node.daemon.log().join("\n")
    );
    assert!(
        counts.get("web-a").copied().unwrap_or(0) > 0
            && counts.get("web-b").copied().unwrap_or(0) > 0,
        "{counts:?}"
    );
    // While web-a was unready (between its probe failing and passing again, give or take a
    // period), it got nothing.
    let log = node.daemon.log();
    let at = |needle: &str| log.iter().position(|l| l.contains(needle));
    assert!(at("probe result changed").is_some(), "{}", log.join("\n"));
    let unready_window: Vec<&(u64, Result<String, String>)> = attempts
        .attempts
        .iter()
        .filter(|(ms, _)| (2_300..3_500).contains(ms))
        .collect();
    assert!(!unready_window.is_empty());
    assert!(
        unready_window
            .iter()
            .all(|(_, r)| r.as_deref() == Ok("web-b")),
        "web-a served while unready: {unready_window:?}"
    );
    // And once web-b was deleted, only web-a answered.
    let tail: Vec<&(u64, Result<String, String>)> = attempts
        .attempts
        .iter()
        .filter(|(ms, _)| *ms > 8_000)
        .collect();
    assert!(!tail.is_empty(), "the client kept connecting after 8 s");
    assert!(
        tail.iter().all(|(_, r)| r.as_deref() == Ok("web-a")),
        "{tail:?}"
    );
    Ok(())
}

/// A startup probe holds liveness back: a slow starter whose TCP liveness probe would fail
/// at first is not restarted, and becomes started and ready once its startup probe passes.
#[test]
fn startup_probe_gates_liveness_and_readiness() -> TestResult {
    let node = PodNode::start("probe-startup", &["--restart-backoff", "100ms"])?;
    let yaml = format!(
        "{}    ports: [{{name: http, containerPort: 8080}}]\n    startupProbe:\n      exec: {{command: [test, -f, /tmp/started]}}\n      periodSeconds: 1\n      failureThreshold: 30\n    livenessProbe:\n      tcpSocket: {{port: 8080}}\n      periodSeconds: 1\n      failureThreshold: 1\n    readinessProbe:\n      tcpSocket: {{port: http}}\n      periodSeconds: 1\n",
        pod_yaml("slow", "", &[("app", "sleep 3; touch /tmp/started; mkdir -p /www; exec httpd -f -p 8080 -h /www")])
    );
    node.apply("slow.yaml", &yaml)?;
    let early = node.wait_pod("slow", LONG, |p| is_running(p, "app"))?;
    assert_eq!(container_status(&early, "app")["started"], false, "{early}");
    assert_eq!(container_status(&early, "app")["ready"], false, "{early}");
    let pod = node.wait_pod("slow", LONG, |p| {
        container_status(p, "app")["ready"] == true
    })?;
    assert_eq!(container_status(&pod, "app")["started"], true);
    assert_eq!(
        container_status(&pod, "app")["restartCount"],
        0,
        "liveness waited for startup"
    );
    std::thread::sleep(Duration::from_secs(2));
    let pod = node.pod("slow")?.ok_or("gone")?;
    assert_eq!(
        container_status(&pod, "app")["restartCount"],
        0,
        "and passes since"
    );
    Ok(())
}

/// Seconds since boot, as `/proc/uptime` says on the host and in every container alike.
fn uptime() -> Result<f64, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string("/proc/uptime")?;
    Ok(text
        .split_whitespace()
        .next()
        .ok_or("empty /proc/uptime")?
        .parse()?)
}

/// A sync that takes seconds (10,000 services written by `iptables-restore`) holds only the
/// daemon's reconcile loop: a probe with a 1 s period keeps its period meanwhile, because
/// probes run on the runtime's worker threads and the loop never does.
#[test]
fn probes_keep_their_period_during_a_long_sync() -> TestResult {
    const SERVICES: u32 = 10_000;
    let node = PodNode::start("probe-long-sync", &["--proxy-mode", "iptables"])?;
    // Every probe run appends the time it ran to a file of an emptyDir the test reads.
    node.apply(
        "ticker.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: ticker}}\nspec:\n  \
             terminationGracePeriodSeconds: 1\n  volumes: [{{name: ticks, emptyDir: {{}}}}]\n  \
             containers:\n  - name: app\n    image: {}\n    command: [sleep, '3600']\n    \
             volumeMounts: [{{name: ticks, mountPath: /ticks}}]\n    readinessProbe:\n      \
             periodSeconds: 1\n      exec: {{command: [sh, -c, 'cut -d\" \" -f1 /proc/uptime >> /ticks/t']}}\n",
            keel_tests::pods::BUSYBOX
        ),
    )?;
    let pod = node.wait_pod("ticker", LONG, |p| {
        container_status(p, "app")["ready"] == true
    })?;
    let ticks_file = node.pod_dir(&pod).join("volumes/ticks/t");

    let mut many = String::new();
    for i in 0..SERVICES {
        let vip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 100, 0, 0)) + i);
        let backend =
            std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 200, 0, 0)) + i);
        many.push_str(&keel_tests::service_yaml(
            &format!("svc-{i}"),
            vip,
            80,
            8080,
        ));
        many.push_str("---\n");
        many.push_str(&keel_tests::slice_yaml(
            &format!("svc-{i}"),
            8080,
            &[(backend, true)],
        ));
        many.push_str("---\n");
    }
    let started = uptime()?;
    node.apply("many.yaml", &many)?;
    node.daemon.wait_for_log(
        &["synced", &format!("service_ports={}", SERVICES * 2)],
        Duration::from_secs(180),
    )?;
    let finished = uptime()?;
    let window = finished - started;
    if window < 2.0 {
        keel_tests::skip(
            "probes::probes_keep_their_period_during_a_long_sync",
            &format!("the sync took only {window:.1} s here: too short to show a stall"),
        );
        return Ok(());
    }
    std::thread::sleep(Duration::from_millis(1500)); // the probe run after the window
    let ticks: Vec<f64> = std::fs::read_to_string(&ticks_file)?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut inside: Vec<f64> = ticks
        .iter()
        .copied()
        .filter(|t| *t >= started && *t <= finished)
        .collect();
    let runs = inside.len();
    inside.insert(0, started);
    inside.push(finished);
    let longest = inside
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(0.0_f64, f64::max);
    println!(
        "a {window:.1} s sync of {SERVICES} services: {runs} probe runs, longest gap {longest:.2} s"
    );
    assert!(
        longest < 2.5,
        "a 1 s probe waited {longest:.2} s during the sync ({runs} runs in {window:.1} s): {ticks:?}"
    );
    assert!(
        runs as f64 >= window - 2.0,
        "{runs} probe runs in {window:.1} s"
    );
    Ok(())
}
