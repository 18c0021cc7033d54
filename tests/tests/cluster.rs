//! The whole cluster, for real: a `control-plane` member and node daemons in cluster mode,
//! each in a namespace of its own on one lab bridge (`keel_lab::cluster`). Objects go in
//! through the real `kubectl`; the scheduler binds pods, the nodes run them and report their
//! status, the EndpointSlice controller publishes them, and a ClusterIP answers from pods on
//! either node, across the host-gw routes.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use keel_tests::cluster::{deployment, has_taint, is_ready, items, node_ready, Cluster, DEMO_VIP};
use keel_tests::TestResult;
use serde_json::Value;

/// Pods of a Deployment are bound by the scheduler, run by the two nodes, reported Running
/// and Ready with addresses from each node's pod CIDR; the Service's ClusterIP answers from
/// pods on both nodes, from either node; a deleted pod stops on its node and leaves the API
/// (graceful deletion completed by the node), and its replacement runs.
#[test]
fn a_deployment_runs_across_nodes_behind_a_cluster_ip() -> TestResult {
    let cluster = Cluster::start(2, "ebpf", &[])?;
    let nodes = cluster.wait(
        "both nodes Ready with a pod CIDR",
        &["get", "nodes"],
        Duration::from_secs(60),
        |list| {
            let nodes = items(list);
            nodes.len() == 2
                && nodes.iter().all(|n| {
                    n["spec"]["podCIDR"].is_string()
                        && n["status"]["conditions"].as_array().is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                })
        },
    )?;
    for node in items(&nodes) {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], name);
        assert!(
            node["status"]["capacity"]["cpu"].is_string()
                && node["status"]["capacity"]["pods"] == "110",
            "{node}"
        );
        cluster.json(&["get", "lease", "-n", "kube-node-lease", name])?;
    }
    // Both nodes joined with the lab's join token: each asked for its own certificate, which
    // the control plane approved and issued.
    let requests = cluster.json(&["get", "csr"])?;
    let mut joined: Vec<String> = items(&requests)
        .iter()
        .filter(|r| {
            r["spec"]["username"]
                .as_str()
                .is_some_and(|u| u.starts_with("system:bootstrap:"))
                && r["status"]["certificate"].is_string()
                && r["status"]["conditions"][0]["reason"] == "AutoApproved"
        })
        .filter_map(|r| r["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    joined.retain(|name| name.starts_with("node-csr-"));
    assert_eq!(joined.len(), 2, "{requests}");

    cluster.apply(&deployment("web", 4))?;
    let pods = cluster.wait(
        "four pods Running and Ready",
        &["get", "pods", "-l", "app=web"],
        Duration::from_secs(120),
        |list| {
            let pods = items(list);
            pods.len() == 4
                && pods
                    .iter()
                    .all(|p| p["status"]["phase"] == "Running" && is_ready(p))
        },
    )?;
    let mut used_nodes = BTreeSet::new();
    for pod in items(&pods) {
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(
            ip.starts_with("10.200."),
            "pod IP {ip} outside the cluster CIDR"
        );
        assert!(pod["status"]["hostIP"].is_string(), "{pod}");
        // kubectl's STATUS column shows a reason when there is one: none on a healthy pod.
        assert!(pod["status"]["reason"].is_null(), "{pod}");
        assert_eq!(
            pod["status"]["containerStatuses"][0]["restartCount"], 0,
            "{pod}"
        );
        used_nodes.insert(node);
    }
    assert_eq!(
        used_nodes.len(),
        2,
        "the scheduler spread the pods: {used_nodes:?}"
    );

    // From either node, the ClusterIP reaches pods on both (through the other node's route).
    let pod_names: BTreeSet<String> = items(&pods)
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    for from in 0..2 {
        let mut answers = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pod_names.is_subset(&answers) && Instant::now() < deadline {
            if let Some(body) = cluster.curl_from_node(from, &format!("http://{DEMO_VIP}/")) {
                answers.insert(body);
            }
        }
        assert_eq!(
            answers,
            pod_names,
            "from n{from}, the ClusterIP answered from only some pods\n{}",
            cluster.lab.logs()
        );
    }

    // kubectl logs, through the API server's pods/log and the node's log endpoint, for a pod
    // on each node.
    for pod in items(&pods) {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let logs = cluster.kubectl(&["logs", name])?;
        assert_eq!(
            logs.trim(),
            format!("serving {name}"),
            "kubectl logs {name}"
        );
    }
    let some_pod = pod_names.iter().next().cloned().unwrap_or_default();
    let error = cluster
        .kubectl(&["logs", &some_pod, "--previous"])
        .expect_err("no previous run");
    assert!(error.contains("no previous run"), "{error}");
    let error = cluster
        .kubectl(&["logs", &some_pod, "-c", "nope"])
        .expect_err("no such container");
    assert!(error.contains("container nope is not valid"), "{error}");

    // A deleted pod: stopped by its node, then gone from the API; the ReplicaSet replaces it.
    let victim = pod_names.iter().next().cloned().unwrap_or_default();
    cluster.kubectl(&["delete", "pod", &victim, "--wait=true", "--timeout=60s"])?;
    cluster.wait(
        "a replacement Running and Ready",
        &["get", "pods", "-l", "app=web"],
        Duration::from_secs(60),
        |list| {
            let pods = items(list);
            pods.len() == 4
                && pods.iter().all(|p| {
                    p["metadata"]["name"] != victim.as_str()
                        && p["status"]["phase"] == "Running"
                        && is_ready(p)
                })
        },
    )?;
    // Pods starting together on a fresh node once raced to create its bridge: none may fail.
    let logs = cluster.lab.logs();
    assert!(
        !logs.contains("ERROR keel_runtime::worker: pod sandbox"),
        "a pod sandbox failed:\n{logs}"
    );
    if std::env::var_os("KEEL_PRINT_LOGS").is_some() {
        eprintln!("{}", cluster.lab.logs());
    }
    Ok(())
}

/// A node daemon killed (`kill -9`): after `--node-monitor-grace-period` its node is
/// `Ready=Unknown` and tainted unreachable, its pods are evicted once their (shortened)
/// `tolerationSeconds` run out and replaced on the node that still lives; the node coming
/// back is untainted, and finishes the deletion of the pods it had.
#[test]
fn a_dead_node_loses_its_pods_to_the_living_and_comes_back() -> TestResult {
    let cluster = Cluster::start(2, "ebpf", &["--node-monitor-grace-period", "6s"])?;
    cluster.wait(
        "both nodes Ready",
        &["get", "nodes"],
        Duration::from_secs(60),
        |list| {
            let nodes = items(list);
            nodes.len() == 2
                && nodes
                    .iter()
                    .all(|n| node_ready(n).as_deref() == Some("True"))
        },
    )?;
    let tolerations = "      tolerations:\n      \
        - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}\n      \
        - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}\n";
    let manifest = deployment("hop", 4).replace(
        "      containers:\n",
        &format!("{tolerations}      containers:\n"),
    );
    cluster.apply(&manifest)?;
    let running_on = |list: &Value| -> Vec<(String, bool)> {
        items(list)
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| {
                (
                    p["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    p["status"]["phase"] == "Running" && is_ready(p),
                )
            })
            .collect()
    };
    cluster.wait(
        "four pods Ready over both nodes",
        &["get", "pods", "-l", "app=hop"],
        Duration::from_secs(120),
        |list| {
            let pods = running_on(list);
            let nodes: BTreeSet<&String> = pods.iter().map(|(n, _)| n).collect();
            pods.len() == 4 && pods.iter().all(|(_, ready)| *ready) && nodes.len() == 2
        },
    )?;

    let mut lab = cluster;
    lab.lab.nodes[1].kill();
    let cluster = lab;
    cluster.wait(
        "n1 Unknown and tainted unreachable",
        &["get", "node", "n1"],
        Duration::from_secs(60),
        |node| {
            node_ready(node).as_deref() == Some("Unknown")
                && has_taint(node, "node.kubernetes.io/unreachable")
        },
    )?;
    cluster.wait(
        "four pods Ready, all on n0",
        &["get", "pods", "-l", "app=hop"],
        Duration::from_secs(90),
        |list| {
            let pods = running_on(list);
            pods.len() == 4 && pods.iter().all(|(node, ready)| node == "n0" && *ready)
        },
    )?;

    let mut lab = cluster;
    lab.lab.nodes[1].start()?;
    let cluster = lab;
    cluster.wait(
        "n1 Ready again and untainted",
        &["get", "node", "n1"],
        Duration::from_secs(60),
        |node| {
            node_ready(node).as_deref() == Some("True")
                && !has_taint(node, "node.kubernetes.io/unreachable")
        },
    )?;
    cluster.wait(
        "the evicted pods gone from the API once n1 stopped them",
        &["get", "pods", "-l", "app=hop"],
        Duration::from_secs(60),
        |list| items(list).len() == 4,
    )?;
    Ok(())
}

/// The whole control plane stopped for 30 s: every request to the ClusterIP from either node
/// still succeeds, the pods keep running; once it is back, a change made through the API (a
/// scale-up) reaches the nodes and the ClusterIP.
#[test]
fn the_nodes_keep_serving_while_the_control_plane_is_away() -> TestResult {
    let mut cluster = Cluster::start(2, "ebpf", &[])?;
    cluster.apply(&deployment("web", 2))?;
    let ready_pods = |count: usize| {
        move |list: &Value| {
            let pods = items(list);
            pods.len() == count
                && pods
                    .iter()
                    .all(|p| p["status"]["phase"] == "Running" && is_ready(p))
        }
    };
    cluster.wait(
        "two pods Ready",
        &["get", "pods", "-l", "app=web"],
        Duration::from_secs(120),
        ready_pods(2),
    )?;
    let url = format!("http://{DEMO_VIP}/");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.curl_from_node(0, &url).is_none() {
        assert!(
            Instant::now() < deadline,
            "the ClusterIP never answered\n{}",
            cluster.lab.logs()
        );
    }

    cluster.lab.members[0].stop();
    let away_until = Instant::now() + Duration::from_secs(30);
    let (mut requests, mut failures) = (0, Vec::new());
    while Instant::now() < away_until {
        for node in 0..2 {
            requests += 1;
            if cluster.curl_from_node(node, &url).is_none() {
                failures.push(node);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(requests > 20, "only {requests} requests in 30 s");
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed while the control plane was away (from nodes {failures:?})\n{}",
        failures.len(),
        cluster.lab.logs()
    );

    cluster.lab.members[0].start()?;
    cluster.kubectl(&["scale", "deployment", "web", "--replicas", "3"])?;
    let pods = cluster.wait(
        "three pods Ready after the control plane came back",
        &["get", "pods", "-l", "app=web"],
        Duration::from_secs(120),
        ready_pods(3),
    )?;
    let names: BTreeSet<String> = items(&pods)
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let mut answers = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !names.is_subset(&answers) && Instant::now() < deadline {
        if let Some(body) = cluster.curl_from_node(1, &url) {
            answers.insert(body);
        }
    }
    assert_eq!(
        answers,
        names,
        "the new pod never got traffic\n{}",
        cluster.lab.logs()
    );
    Ok(())
}

/// How long after a container dies a client of its Service may still fail: the readiness
/// probe's period × failure threshold (1 s × 3 in [`deployment`]), the restart backoff, and
/// the way from the node's status through the API and the EndpointSlice controller back to
/// the node's datapath, on two shared cores.
const READINESS_WINDOW: Duration = Duration::from_secs(10);

/// A pod's container killed with `-9` while a client loops through the ClusterIP from the
/// node: requests may fail only within the readiness window after the kill; after it none
/// fails, and the restarted container (restart count 1) serves again.
#[test]
fn a_killed_container_costs_requests_only_within_the_readiness_window() -> TestResult {
    let cluster = Cluster::start(1, "ebpf", &[])?;
    cluster.apply(&deployment("loop", 2))?;
    let pods = cluster.wait(
        "two pods Ready",
        &["get", "pods", "-l", "app=loop"],
        Duration::from_secs(120),
        |list| items(list).len() == 2 && items(list).iter().all(is_ready),
    )?;
    let names: BTreeSet<String> = items(&pods)
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let url = format!("http://{DEMO_VIP}/");
    let mut answers = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !names.is_subset(&answers) && Instant::now() < deadline {
        if let Some(body) = cluster.curl_from_node(0, &url) {
            answers.insert(body);
        }
    }
    assert_eq!(answers, names, "both pods answer before the kill");

    let victim = items(&pods)[0].clone();
    let victim_name = victim["metadata"]["name"].as_str().unwrap_or_default();
    let running = cluster
        .dir()
        .join("cluster/n0/state/pods")
        .join(victim["metadata"]["uid"].as_str().unwrap_or_default())
        .join("containers/httpd/running.json");
    let running: Value = serde_json::from_slice(&std::fs::read(&running)?)?;
    let pid = running["pid"].as_i64().ok_or("no pid in running.json")? as i32;

    let started = Instant::now();
    let mut killed_at = None;
    let mut outcomes = Vec::new();
    while started.elapsed() < Duration::from_secs(25) {
        if killed_at.is_none() && started.elapsed() > Duration::from_secs(2) {
            // SAFETY: kill(2) on a pid read from the node's own record of its container.
            if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
                return Err(format!("kill {pid}: {}", std::io::Error::last_os_error()).into());
            }
            killed_at = Some(started.elapsed());
        }
        let at = started.elapsed();
        outcomes.push((at, cluster.curl_from_node(0, &url)));
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed_at = killed_at.ok_or("the container was never killed")?;
    let late_failures: Vec<Duration> = outcomes
        .iter()
        .filter(|(at, answer)| {
            answer.is_none() && (*at < killed_at || *at > killed_at + READINESS_WINDOW)
        })
        .map(|(at, _)| *at)
        .collect();
    let failed = outcomes.iter().filter(|(_, a)| a.is_none()).count();
    assert!(
        late_failures.is_empty(),
        "requests failed outside the readiness window (killed at {killed_at:?}): {late_failures:?}\n{}",
        cluster.lab.logs()
    );
    let after: BTreeSet<&str> = outcomes
        .iter()
        .filter(|(at, _)| *at > killed_at + READINESS_WINDOW)
        .filter_map(|(_, answer)| answer.as_deref())
        .collect();
    assert!(
        after.contains(victim_name),
        "the restarted container never served again ({failed} of {} requests failed, all within the window)\n{}",
        outcomes.len(),
        cluster.lab.logs()
    );
    let pod = cluster.json(&["get", "pod", victim_name])?;
    assert_eq!(
        pod["status"]["containerStatuses"][0]["restartCount"], 1,
        "{pod}"
    );
    eprintln!(
        "{failed} of {} requests failed, all within {READINESS_WINDOW:?} of the kill",
        outcomes.len()
    );
    Ok(())
}

/// Debian's Prometheus, given the generated scrape configuration, finds every member and node
/// up, scraped without errors (the endpoints speak OpenMetrics: a parse error would be the
/// target's `lastError`), and keel's key series have samples.
#[test]
fn prometheus_scrapes_every_member_and_node() -> TestResult {
    let cluster = Cluster::start(2, "ebpf", &[])?;
    let prometheus = cluster
        .lab
        .start_prometheus(&cluster.dir().join("prometheus"))?;
    // Prometheus' HTTP API, asked again for up to 15 s: on these 2 busy cores a query can
    // time out or fail once while Prometheus compacts or scrapes (an empty answer).
    let api = |path: &str| -> Result<Value, String> {
        let url = format!("http://{}{path}", prometheus.listen);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let output = cluster
                .lab
                .run_on_switch(Path::new("curl"), &["-sf", "--max-time", "5", &url])
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            match serde_json::from_str(&text) {
                Ok(value) => return Ok(value),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("{url}: {e}: {text:?} (curl: {})", output.status))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let targets = loop {
        let targets = api("/api/v1/targets")?;
        let active = targets["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if active.len() == 3 && active.iter().all(|t| t["health"] == "up") {
            break active;
        }
        assert!(
            Instant::now() < deadline,
            "not every target up within 60 s: {}",
            serde_json::to_string_pretty(&targets).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    for target in &targets {
        assert_eq!(target["lastError"], "", "{target}");
    }
    let jobs: BTreeSet<&str> = targets
        .iter()
        .filter_map(|t| t["labels"]["job"].as_str())
        .collect();
    assert_eq!(jobs, BTreeSet::from(["control-plane", "node"]));
    let samples = api("/api/v1/query?query=scrape_samples_scraped")?;
    let results = samples["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(results.len(), 3, "{samples}");
    for result in &results {
        let count: f64 = result["value"][1]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0.0);
        assert!(count > 10.0, "{result}");
    }
    // One series each keel component is known by: the store, the scheduler, the controllers'
    // queues, the node's datapath.
    for (series, job, expected) in [
        ("etcd_server_has_leader", "control-plane", 1),
        ("scheduler_pending_pods", "control-plane", 1),
        ("workqueue_adds_total", "control-plane", 1),
        ("keel_service_ports", "node", 2),
    ] {
        let query = format!("/api/v1/query?query=count(count%20by%20(instance)%20({series}%7Bjob%3D%22{job}%22%7D))");
        let answer = api(&query)?;
        let count: usize = answer["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        assert_eq!(count, expected, "{series} on {job}: {answer}");
    }
    Ok(())
}
