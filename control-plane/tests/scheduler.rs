//! keel's scheduler end to end: a dozen nodes and a set of pods created through the API server
//! (kube-rs as the client, as any user would), the scheduler running in the `control-plane`
//! process as `system:kube-scheduler`, and the bindings checked where they land — topology
//! spread, taints and tolerations, node selectors, pod anti-affinity and affinity, an
//! unschedulable pod's condition and event, and that pod placed once a node big enough joins;
//! preemption; scheduling gates.
//! Until node daemons join the control plane, the test plays the nodes' part: it writes their
//! Node objects.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use support::api::{ApiServer, Backend};
use support::scheduling::{add_node, container, create_pod, wait_bound};

use support::scheduling::{HOSTNAME, ZONE};

fn zone_of(node: &str) -> &'static str {
    // Nodes n0–n3 are in zone a, n4–n7 in b, n8–n11 in c.
    match node.trim_start_matches('n').parse::<usize>() {
        Ok(0..=3) => "a",
        Ok(4..=7) => "b",
        Ok(8..=11) => "c",
        _ => "other",
    }
}

#[test]
fn pods_land_where_kube_scheduler_would_put_them() {
    let server = ApiServer::start_with_components(Backend::Keel, &[]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        for i in 0..12 {
            let zone = ["a", "b", "c"][i / 4];
            let extra = match i {
                // Cordoned.
                0 => json!({"unschedulable": true}),
                // Reserved for GPU work.
                11 => json!({"labels": {"gpu": "true"}, "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
                _ => json!({}),
            };
            add_node(&nodes, &format!("n{i}"), zone, "4", extra).await;
        }

        // Six pods spread over the zones with at most one of difference.
        let mut spread = Vec::new();
        for i in 0..6 {
            let name = format!("spread-{i}");
            create_pod(&pods, json!({
                "metadata": {"name": name, "labels": {"app": "spread"}},
                "spec": {
                    "containers": container("100m"),
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "spread"}},
                    }],
                },
            })).await;
            spread.push(name);
        }
        // Three caches, never two on one node.
        let mut caches = Vec::new();
        for i in 0..3 {
            let name = format!("cache-{i}");
            create_pod(&pods, json!({
                "metadata": {"name": name, "labels": {"app": "cache"}},
                "spec": {
                    "containers": container("100m"),
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                        "topologyKey": HOSTNAME, "labelSelector": {"matchLabels": {"app": "cache"}},
                    }]}},
                },
            })).await;
            caches.push(name);
        }
        // A GPU job: selects the GPU node and tolerates its taint.
        create_pod(&pods, json!({
            "metadata": {"name": "gpu-job"},
            "spec": {
                "containers": container("1"),
                "nodeSelector": {"gpu": "true"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            },
        })).await;

        let mut wanted: Vec<String> = spread.iter().chain(&caches).cloned().collect();
        wanted.push("gpu-job".into());
        let placed = wait_bound(&pods, &wanted).await;

        let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
        for name in &spread {
            *per_zone.entry(zone_of(&placed[name])).or_default() += 1;
        }
        assert_eq!(per_zone, BTreeMap::from([("a", 2), ("b", 2), ("c", 2)]), "{placed:?}");
        let cache_nodes: BTreeSet<&String> = caches.iter().map(|name| &placed[name]).collect();
        assert_eq!(cache_nodes.len(), 3, "caches on distinct nodes: {placed:?}");
        assert_eq!(placed["gpu-job"], "n11");
        for (name, node) in &placed {
            assert_ne!(node, "n0", "{name} landed on the cordoned node");
            if name != "gpu-job" {
                assert_ne!(node, "n11", "{name} ignored the GPU node's taint");
            }
        }

        // Next to a cache, in the same zone (required pod affinity).
        create_pod(&pods, json!({
            "metadata": {"name": "web"},
            "spec": {
                "containers": container("100m"),
                "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "topologyKey": ZONE, "labelSelector": {"matchLabels": {"app": "cache"}},
                }]}},
            },
        })).await;
        let web = wait_bound(&pods, &["web".to_string()]).await;
        let cache_zones: BTreeSet<&str> = cache_nodes.iter().map(|n| zone_of(n)).collect();
        assert!(cache_zones.contains(zone_of(&web["web"])), "web in a cache's zone: {web:?}");

        // Too big for any node: it stays pending, and says why as kube-scheduler does.
        create_pod(&pods, json!({
            "metadata": {"name": "huge"},
            "spec": {"containers": container("64")},
        })).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let message = loop {
            let pod = pods.get("huge").await.expect("huge");
            let condition = pod
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled");
            if let Some(condition) = condition {
                assert_eq!(condition.status, "False");
                assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
                break condition.message.unwrap_or_default();
            }
            assert!(tokio::time::Instant::now() < deadline, "no PodScheduled condition on huge");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            message,
            "0/12 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
             1 node(s) were unschedulable, 10 Insufficient cpu. preemption: 0/12 nodes are \
             available: 12 Preemption is not helpful for scheduling.",
        );
        assert!(pods.get("huge").await.expect("huge").spec.and_then(|s| s.node_name).is_none());
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let list = events.list(&ListParams::default()).await.expect("events");
            let failed = list.items.iter().find(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.involved_object.name.as_deref() == Some("huge")
            });
            if let Some(event) = failed {
                assert_eq!(event.type_.as_deref(), Some("Warning"));
                assert_eq!(event.message.as_deref(), Some(message.as_str()));
                assert_eq!(
                    event.source.as_ref().and_then(|s| s.component.as_deref()),
                    Some("default-scheduler")
                );
                let scheduled = list.items.iter().any(|e| {
                    e.reason.as_deref() == Some("Scheduled")
                        && e.involved_object.name.as_deref() == Some("gpu-job")
                        && e.message.as_deref() == Some("Successfully assigned default/gpu-job to n11")
                });
                assert!(scheduled, "a Scheduled event for gpu-job");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no FailedScheduling event for huge");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A node big enough joins: the pending pod is moved back and placed there.
        add_node(&nodes, "big", "c", "128", json!({})).await;
        let huge = wait_bound(&pods, &["huge".to_string()]).await;
        assert_eq!(huge["huge"], "big");

        // kubectl shows where each pod went, as users check it.
        let wide = server.kubectl_ok(&["get", "pods", "-o", "wide"]);
        assert!(wide.lines().any(|l| l.starts_with("gpu-job ") && l.contains(" n11 ")), "{wide}");
    });
}

/// A pod naming another scheduler is left for it; one naming a node is not touched.
#[test]
fn pods_of_other_schedulers_are_left_alone() {
    let server = ApiServer::start_with_components(Backend::Keel, &[]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        add_node(&nodes, "n1", "a", "4", json!({})).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        create_pod(
            &pods,
            json!({
                "metadata": {"name": "theirs"},
                "spec": {"schedulerName": "my-scheduler", "containers": container("100m")},
            }),
        )
        .await;
        create_pod(
            &pods,
            json!({
                "metadata": {"name": "ours"},
                "spec": {"containers": container("100m")},
            }),
        )
        .await;
        wait_bound(&pods, &["ours".to_string()]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let theirs = pods.get("theirs").await.expect("theirs");
        assert!(theirs.spec.and_then(|s| s.node_name).is_none());
        let conditions = theirs.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions.iter().all(|c| c.type_ != "PodScheduled"),
            "{conditions:?}"
        );
    });
}

async fn lease_holder(client: &Client, lease: &str) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "kube-system");
    leases
        .get_opt(lease)
        .await
        .ok()
        .flatten()
        .and_then(|lease| lease.spec?.holder_identity)
}

/// Two control-plane processes over one store both run a scheduler and a controller-manager
/// candidate; only the holder of `kube-system/kube-scheduler` schedules, only the holder of
/// `kube-system/kube-controller-manager` runs the controllers. The holder of both is killed:
/// the other takes both Leases within the lease duration (15 s) plus a retry period, and
/// schedules.
#[test]
fn a_killed_scheduler_leader_hands_over_within_the_lease_duration() {
    use keel_lab::{Child, Placement};
    use std::process::Command;

    let mut first = ApiServer::start_with_components(Backend::Etcd, &[]);
    let second_dir = tempfile::tempdir().expect("a data directory");
    let second_api = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let mut command = Command::new(support::BINARY);
    command
        .args(["--name", "second", "--etcd-servers", &first.store_endpoint])
        .args(["--listen-api", &second_api.to_string()])
        .arg("--data-dir")
        .arg(second_dir.path())
        .env("RUST_LOG", "info,openraft=warn");
    let mut second = Child::spawn("second", command, &Placement::default()).expect("starts");
    if let Err(e) = second.wait_for_line(
        "waiting for the kube-system/kube-scheduler lease",
        Duration::from_secs(20),
    ) {
        panic!(
            "the second control-plane did not start: {e}\n{}",
            second.output().join("\n")
        );
    }
    let rt = support::runtime();
    rt.block_on(async {
        let first_client = first.client().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let holder = loop {
            let scheduler = lease_holder(&first_client, "kube-scheduler").await;
            let controllers = lease_holder(&first_client, "kube-controller-manager").await;
            if let (Some(holder), Some(_)) = (scheduler, controllers) {
                break holder;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nobody took the lease"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(
            holder.starts_with("default_"),
            "the first process leads: {holder}"
        );

        // The second candidate does not schedule while the first leads... and the first is
        // then stopped without releasing the lease, as a crashed process would leave it.
        first.stop_api();
        let stopped = tokio::time::Instant::now();
        let second_client =
            support::api::client_from(&second_dir.path().join("admin.kubeconfig")).await;
        let new_holder = loop {
            let scheduler = lease_holder(&second_client, "kube-scheduler").await;
            let controllers = lease_holder(&second_client, "kube-controller-manager").await;
            match (scheduler, controllers) {
                (Some(h), Some(c)) if h.starts_with("second_") && c.starts_with("second_") => {
                    break h
                }
                _ => {}
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(22),
                "the second candidate did not take the lease within 22 s:\n{}",
                second.output().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let took = stopped.elapsed();
        assert!(
            took >= Duration::from_secs(5),
            "taken after {took:?}: the lease was not respected"
        );
        println!("the lease passed to {new_holder} {took:?} after the leader stopped");

        // And the new leader schedules.
        let nodes: Api<Node> = Api::all(second_client.clone());
        add_node(&nodes, "n1", "a", "4", json!({})).await;
        let pods: Api<Pod> = Api::namespaced(second_client.clone(), "default");
        create_pod(
            &pods,
            json!({"metadata": {"name": "after"}, "spec": {"containers": container("100m")}}),
        )
        .await;
        let placed = wait_bound(&pods, &["after".to_string()]).await;
        assert_eq!(placed["after"], "n1");
    });
    second.signal(libc::SIGTERM);
    let _ = second.finish(Duration::from_secs(10));
}

/// A pod of a higher PriorityClass that fits nowhere evicts a lower one: it is nominated to
/// the node, the victim is deleted gracefully with a `Preempted` event, and once the node's
/// kubelet (played by the test) finishes the deletion, the preemptor is bound there — not a
/// lower-priority pod that arrived meanwhile (the nominated pod's room is held). The
/// Priority admission plugin sets `spec.priority` from the class and refuses unknown classes.
#[test]
fn a_higher_priority_pod_preempts_a_lower_one() {
    let server = ApiServer::start_with_components(Backend::Keel, &[]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> =
            Api::all(client.clone());
        for (name, value) in [("low", 10), ("high", 1000)] {
            let class = serde_json::from_value(json!({"metadata": {"name": name}, "value": value}))
                .expect("a PriorityClass");
            classes
                .create(&PostParams::default(), &class)
                .await
                .expect("class created");
        }
        let system = classes
            .get("system-node-critical")
            .await
            .expect("bootstrapped");
        assert_eq!(system.value, Some(2_000_001_000));
        let nodes: Api<Node> = Api::all(client.clone());
        add_node(&nodes, "n1", "a", "2", json!({})).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

        let unknown = serde_json::from_value::<Pod>(json!({
            "metadata": {"name": "nameless"},
            "spec": {"priorityClassName": "no-such-class", "containers": container("1")},
        }))
        .expect("a pod");
        match pods.create(&PostParams::default(), &unknown).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 403);
                assert!(
                    status
                        .message
                        .contains("no PriorityClass with name no-such-class was found"),
                    "{}",
                    status.message
                );
            }
            other => panic!("an unknown class must be refused: {other:?}"),
        }

        create_pod(
            &pods,
            json!({
                "metadata": {"name": "victim"},
                "spec": {"priorityClassName": "low", "containers": container("2")},
            }),
        )
        .await;
        wait_bound(&pods, &["victim".to_string()]).await;
        let victim = pods.get("victim").await.expect("victim");
        assert_eq!(victim.spec.as_ref().and_then(|s| s.priority), Some(10));

        create_pod(
            &pods,
            json!({
                "metadata": {"name": "important"},
                "spec": {"priorityClassName": "high", "containers": container("2")},
            }),
        )
        .await;
        // The scheduler nominates the node and deletes the victim gracefully.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let victim = pods.get_opt("victim").await.expect("get");
            let terminating = victim
                .as_ref()
                .is_some_and(|v| v.metadata.deletion_timestamp.is_some());
            if terminating {
                // kube's DisruptionTarget condition, written before the deletion: it tells
                // the scheduler this pod's room is on its way to the preemptor.
                let disruption = victim
                    .and_then(|v| v.status)
                    .and_then(|s| s.conditions)
                    .into_iter()
                    .flatten()
                    .find(|c| c.type_ == "DisruptionTarget");
                let disruption = disruption.expect("a DisruptionTarget condition on the victim");
                assert_eq!(disruption.status, "True");
                assert_eq!(disruption.reason.as_deref(), Some("PreemptionByScheduler"));
                assert_eq!(
                    disruption.message.as_deref(),
                    Some("default-scheduler: preempting to accommodate a higher priority pod")
                );
                break;
            }
            assert!(
                victim.is_some(),
                "the victim vanished without a graceful deletion"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "the victim was not evicted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let important = pods.get("important").await.expect("important");
        assert_eq!(
            important
                .status
                .and_then(|s| s.nominated_node_name)
                .as_deref(),
            Some("n1")
        );
        // The node's kubelet stops the victim and finishes its deletion.
        pods.delete(
            "victim",
            &kube::api::DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("final delete");
        // A pod of lower priority arrives while the preemptor is nominated but waits out its
        // backoff: the room is the preemptor's, the latecomer must not take it.
        create_pod(
            &pods,
            json!({
                "metadata": {"name": "latecomer"},
                "spec": {"priorityClassName": "low", "containers": container("2")},
            }),
        )
        .await;
        let placed = wait_bound(&pods, &["important".to_string()]).await;
        assert_eq!(placed["important"], "n1");
        // Bound: the nomination has served and is cleared, as kube clears it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let important = pods.get("important").await.expect("important");
            let nominated = important.status.and_then(|s| s.nominated_node_name);
            if nominated.is_none() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nominatedNodeName still {nominated:?} after the binding"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let latecomer = pods.get("latecomer").await.expect("latecomer");
        assert_eq!(
            latecomer.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            None,
            "the latecomer took the room freed for the preemptor"
        );
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let list = events.list(&ListParams::default()).await.expect("events");
        let preempted = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("Preempted")
                && e.involved_object.name.as_deref() == Some("victim")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.ends_with("on node n1"))
        });
        assert!(preempted, "a Preempted event on the victim");
    });
}

/// The value of `scheduler_pending_pods{queue="<queue>"}` on the member's /metrics.
fn pending_gauge(metrics: &str, queue: &str) -> Option<String> {
    metric(
        metrics,
        &format!("scheduler_pending_pods{{queue=\"{queue}\"}}"),
    )
}

/// The value of the sample `series` (name and labels) on the member's /metrics.
fn metric(metrics: &str, series: &str) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", metrics])
        .output()
        .expect("curl");
    let prefix = format!("{series} ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_string))
}

/// A pod with `spec.schedulingGates` is created `PodScheduled=False` `SchedulingGated` (kube's
/// message), counted as `gated`, never tried while a gate remains; a gate cannot be added
/// (kube's validation error, through kube-rs); once the last gate is patched away it is bound.
#[test]
fn a_gated_pod_waits_until_its_gates_are_removed() {
    let metrics_addr = format!("127.0.0.1:{}", support::free_port());
    let server =
        ApiServer::start_with_components(Backend::Keel, &["--metrics-addr", &metrics_addr]);
    let metrics = format!("http://{metrics_addr}/metrics");
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        add_node(&nodes, "n1", "a", "2", json!({})).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        create_pod(
            &pods,
            json!({
                "metadata": {"name": "gated"},
                "spec": {"containers": container("100m"),
                    "schedulingGates": [{"name": "example.com/quota"}, {"name": "example.com/arch"}]},
            }),
        )
        .await;
        let scheduled = |pod: &Pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled").cloned())
        };
        let gated = pods.get("gated").await.expect("gated");
        let condition = scheduled(&gated).expect("a PodScheduled condition");
        assert_eq!(
            (
                condition.status.as_str(),
                condition.reason.as_deref(),
                condition.message.as_deref()
            ),
            (
                "False",
                Some("SchedulingGated"),
                Some("Scheduling is blocked due to non-empty scheduling gates")
            )
        );
        let add = json!({"spec": {"schedulingGates": [
            {"name": "example.com/quota"}, {"name": "example.com/arch"}, {"name": "x"}]}});
        match pods
            .patch("gated", &PatchParams::default(), &Patch::Merge(add))
            .await
        {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422);
                assert_eq!(
                    status.message,
                    "Pod \"gated\" is invalid: spec.schedulingGates[2].name: Forbidden: only \
                     deletion is allowed, but found new scheduling gate 'x'"
                );
            }
            other => panic!("adding a gate must be refused: {other:?}"),
        }
        let one_left = json!({"spec": {"schedulingGates": [{"name": "example.com/arch"}]}});
        pods.patch("gated", &PatchParams::default(), &Patch::Merge(one_left))
            .await
            .expect("a gate removed");
        // The gauge is set on the scheduler's one-second tick.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let gated = pods.get("gated").await.expect("gated");
        assert_eq!(gated.spec.as_ref().and_then(|s| s.node_name.as_deref()), None);
        assert_eq!(
            scheduled(&gated).and_then(|c| c.reason).as_deref(),
            Some("SchedulingGated"),
            "one gate left: the scheduler must not have tried it"
        );
        assert_eq!(pending_gauge(&metrics, "gated").as_deref(), Some("1"));
        let none = json!({"spec": {"schedulingGates": null}});
        pods.patch("gated", &PatchParams::default(), &Patch::Merge(none))
            .await
            .expect("the last gate removed");
        let placed = wait_bound(&pods, &["gated".to_string()]).await;
        assert_eq!(placed["gated"], "n1");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(pending_gauge(&metrics, "gated").as_deref(), Some("0"));
        // One attempt, recorded as kube-scheduler does once its binding was done: counted
        // `scheduled`, its duration (pop to bound) in the histogram under the same labels.
        let labels = "{result=\"scheduled\",profile=\"default-scheduler\"}";
        assert_eq!(
            metric(&metrics, &format!("scheduler_schedule_attempts_total{labels}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            metric(
                &metrics,
                &format!("scheduler_scheduling_attempt_duration_seconds_count{labels}")
            )
            .as_deref(),
            Some("1")
        );
    });
}
