//! A control plane of three members, for real: each `control-plane` in a namespace of its
//! own, behind the lab's TCP balancer (as haproxy fronts kube-apiservers), node daemons
//! talking to the balancer. The raft leader is killed (`kill -9`) in the middle of a rollout,
//! and a member is cut off from the others by rules in its own namespace; the cluster goes
//! on, and the cut-off member takes no write.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use keel_lab::cluster::MEMBER_METRICS_PORT;
use keel_tests::cluster::{deployment, is_ready, items, Cluster};
use keel_tests::TestResult;
use serde_json::Value;

/// kube's defaults throughout: 15 s leases for the controllers and the scheduler, 40 s of
/// node monitor grace (a node's Lease renewal may fail while it reconnects).
const MEMBER_ARGS: &[&str] = &[];

/// The index of the member whose store says it leads, if exactly one does.
fn raft_leader(cluster: &Cluster, among: &[usize]) -> Option<usize> {
    let curl = Path::new("curl");
    let leaders: Vec<usize> = among
        .iter()
        .copied()
        .filter(|&i| {
            let url = format!(
                "http://{}:{MEMBER_METRICS_PORT}/metrics",
                cluster.lab.members[i].addr
            );
            cluster
                .lab
                .run_on_switch(curl, &["-sf", "--max-time", "2", &url])
                .ok()
                .is_some_and(|out| {
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .any(|l| l.trim() == "etcd_server_is_leader 1")
                })
        })
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

fn wait_for_leader(cluster: &Cluster, among: &[usize]) -> Result<usize, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = raft_leader(cluster, among) {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no single raft leader among {among:?}\n{}",
                cluster.lab.logs()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every pod of `app` Running and Ready, `count` of them, none being deleted.
fn ready_pods(count: usize) -> impl Fn(&Value) -> bool {
    move |list: &Value| {
        let pods = items(list);
        pods.len() == count
            && pods.iter().all(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["phase"] == "Running"
                    && is_ready(p)
            })
    }
}

/// The raft leader killed right after a rollout started: the survivors elect a leader, the
/// controllers and the scheduler (wherever their Leases were) carry on, the nodes reconnect
/// through the balancer, and `kubectl rollout status` sees the rollout complete, with the
/// new ReplicaSet at every replica and the old one at none.
#[test]
fn the_raft_leader_killed_during_a_rollout_and_the_rollout_completes() -> TestResult {
    let mut cluster = Cluster::start_members(3, 2, "ebpf", MEMBER_ARGS)?;
    cluster.apply(&deployment("roll", 4))?;
    cluster.wait(
        "four pods Ready",
        &["get", "pods", "-l", "app=roll"],
        Duration::from_secs(120),
        ready_pods(4),
    )?;
    let leader = wait_for_leader(&cluster, &[0, 1, 2])?;

    cluster.kubectl(&["rollout", "restart", "deployment/roll"])?;
    cluster.lab.members[leader].kill();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = wait_for_leader(&cluster, &survivors)?;
    assert_ne!(new_leader, leader);

    cluster
        .kubectl(&["rollout", "status", "deployment/roll", "--timeout=180s"])
        .map_err(|e| format!("{e}\n{}", cluster.lab.logs()))?;
    let deployment = cluster.json(&["get", "deployment", "roll"])?;
    assert_eq!(deployment["status"]["updatedReplicas"], 4, "{deployment}");
    assert_eq!(deployment["status"]["readyReplicas"], 4, "{deployment}");
    let sets = cluster.json(&["get", "replicasets", "-l", "app=roll"])?;
    let mut replicas: Vec<i64> = items(&sets)
        .iter()
        .map(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(-1))
        .collect();
    replicas.sort();
    assert_eq!(replicas, vec![0, 4], "old and new ReplicaSets: {sets}");
    cluster.wait(
        "four pods of the new template Ready",
        &["get", "pods", "-l", "app=roll"],
        Duration::from_secs(60),
        ready_pods(4),
    )?;
    Ok(())
}

/// `iptables` in member `i`'s namespace drops everything to and from the other members: it is
/// cut off from raft, not from its clients.
fn cut_off(cluster: &Cluster, i: usize, action: &str) -> Result<(), String> {
    let netns = cluster.lab.members[i].netns.clone();
    for (j, other) in cluster.lab.members.iter().enumerate() {
        if j == i {
            continue;
        }
        let addr = other.addr.to_string();
        for rule in [
            ["INPUT", "-s", addr.as_str()],
            ["OUTPUT", "-d", addr.as_str()],
        ] {
            let args = [action, rule[0], rule[1], rule[2], "-j", "DROP"];
            let out = cluster
                .lab
                .run_in(&netns, None, Path::new("iptables"), &args)
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "iptables {args:?} in m{i}: {}",
                    String::from_utf8_lossy(&out.stdout)
                ));
            }
        }
    }
    Ok(())
}

/// One member cut off from the other two: a write through its own API server fails (and
/// never appears anywhere, even if the member led when it was cut off), while the majority
/// elects a leader if it must and goes on (a scale-up runs to its end). Healed, the member
/// catches up with what the majority did.
#[test]
fn a_partitioned_minority_member_takes_no_writes_while_the_cluster_goes_on() -> TestResult {
    let cluster = Cluster::start_members(3, 1, "ebpf", MEMBER_ARGS)?;
    cluster.apply(&deployment("part", 1))?;
    cluster.wait(
        "one pod Ready",
        &["get", "pods", "-l", "app=part"],
        Duration::from_secs(120),
        ready_pods(1),
    )?;
    // The balancer sends clients to m0 while it lives: cut off another member, the leader
    // if that is not m0, so that the partition also costs the cluster its leader.
    let leader = wait_for_leader(&cluster, &[0, 1, 2])?;
    let isolated = if leader == 0 { 2 } else { leader };
    eprintln!("raft leader m{leader}; cutting off m{isolated}");
    let direct = cluster.dir().join(format!("m{isolated}.kubeconfig"));
    cluster.lab.member_kubeconfig(isolated, &direct)?;
    cluster.kubectl_with(&direct, &["get", "--raw", "/readyz"])?;

    cut_off(&cluster, isolated, "-I")?;
    let majority: Vec<usize> = (0..3).filter(|&i| i != isolated).collect();
    wait_for_leader(&cluster, &majority)?;
    let refused = cluster.kubectl_with(
        &direct,
        &[
            "create",
            "configmap",
            "minority",
            "--from-literal=k=v",
            "--request-timeout=15s",
        ],
    );
    assert!(
        refused.is_err(),
        "the cut-off member took a write: {refused:?}"
    );

    // The majority goes on: a scale-up is scheduled, run and reported.
    cluster.kubectl(&["scale", "deployment", "part", "--replicas", "3"])?;
    cluster.wait(
        "three pods Ready while a member is cut off",
        &["get", "pods", "-l", "app=part"],
        Duration::from_secs(120),
        ready_pods(3),
    )?;
    let missing = cluster.kubectl(&["get", "configmap", "minority"]);
    assert!(
        missing
            .as_ref()
            .is_err_and(|e| e.contains("NotFound") || e.contains("not found")),
        "the minority's write reached the majority: {missing:?}"
    );

    cut_off(&cluster, isolated, "-D")?;
    // Healed: the member serves what the majority decided, and never the refused write.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = cluster
            .kubectl_with(
                &direct,
                &[
                    "get",
                    "deployment",
                    "part",
                    "-o",
                    "jsonpath={.spec.replicas}",
                ],
            )
            .unwrap_or_default();
        if seen.trim() == "3" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "m{isolated} did not catch up (replicas {seen:?})\n{}",
            cluster.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for kubeconfig in [direct.as_path(), cluster.lab.admin_kubeconfig.as_path()] {
        let gone = cluster.kubectl_with(kubeconfig, &["get", "configmap", "minority"]);
        assert!(
            gone.as_ref().is_err_and(|e| e.contains("not found")),
            "the refused write exists after healing: {gone:?}"
        );
    }
    Ok(())
}
