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
