//! keel's controllers end to end, in the `control-plane` process beside the API server and the
//! scheduler, elected on their Lease: a ReplicaSet creates its pods (owned, scheduled), its
//! status follows them, scaling down deletes the surplus, an orphan with matching labels is
//! adopted; the EndpointSlice controller publishes a Service's ready pods with named target
//! ports resolved; the garbage collector deletes a ReplicaSet's pods in foreground (the
//! ReplicaSet last) and in background (the ReplicaSet first). Until node daemons join, the test plays the kubelet: it reports pods
//! running and ready, and finishes graceful deletions.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::api::{ApiServer, Backend};
use support::eventually;

/// The kubelet's part: bound pods become Running and Ready with an IP; pods being deleted
/// are finished off. Returns the live pods' names.
async fn play_kubelet(pods: &Api<Pod>) -> Vec<String> {
    let list = pods.list(&ListParams::default()).await.expect("list pods");
    let mut live = Vec::new();
    for (i, pod) in list.items.iter().enumerate() {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            let now = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            let _ = pods.delete(&name, &now).await;
            continue;
        }
        live.push(name.clone());
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some();
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if bound && !running {
            let ip = format!("10.244.0.{}", 10 + i);
            let status = json!({"status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "ContainersReady", "status": "True"},
                ],
            }});
            let _ = pods
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await;
        }
    }
    live.sort();
    live
}

#[test]
fn a_replicaset_keeps_its_pods_and_a_service_gets_its_endpoint_slices() {
    let server = ApiServer::start_with_components(Backend::Keel, &[]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("a Node");
        nodes.create(&PostParams::default(), &node).await.expect("node");
        let capacity = json!({"cpu": "8", "memory": "16Gi", "pods": "110"});
        nodes
            .patch_status(
                "n1",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"capacity": capacity, "allocatable": capacity}})),
            )
            .await
            .expect("node status");

        let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web", "image": "registry.invalid/web:1",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "resources": {"requests": {"cpu": "100m"}},
                    }]},
                },
            },
        }))
        .expect("a ReplicaSet");
        let rs = sets.create(&PostParams::default(), &rs).await.expect("rs created");
        let uid = rs.metadata.uid.clone().expect("uid");

        // Three pods, owned by the ReplicaSet, named after it, bound by the scheduler.
        let owned = eventually("three bound pods owned by web", Duration::from_secs(30), || async {
            let list = pods.list(&ListParams::default()).await.ok()?;
            let owned: Vec<&Pod> = list
                .items
                .iter()
                .filter(|p| {
                    p.metadata.owner_references.iter().flatten().any(|o| {
                        o.uid == uid && o.controller == Some(true) && o.kind == "ReplicaSet"
                    })
                })
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
                .collect();
            (owned.len() == 3).then(|| {
                owned
                    .iter()
                    .map(|p| p.metadata.name.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
            })
        })
        .await;
        assert!(owned.iter().all(|n| n.starts_with("web-")), "{owned:?}");

        // Reported ready by the kubelet: the status counts them.
        let status = eventually("web's status counts 3 ready", Duration::from_secs(30), || async {
            play_kubelet(&pods).await;
            let rs = sets.get("web").await.ok()?;
            let status = rs.status?;
            (status.ready_replicas == Some(3) && status.available_replicas == Some(3))
                .then_some(status)
        })
        .await;
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(3));
        assert_eq!(status.observed_generation, Some(1));

        // A Service selecting them: one slice, three ready endpoints, the named port resolved.
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        }))
        .expect("a Service");
        services.create(&PostParams::default(), &service).await.expect("service");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
        let slice = eventually("web's slice with 3 ready endpoints", Duration::from_secs(30), || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?;
            let slice = list.items.into_iter().next()?;
            let ready = slice
                .endpoints
                .iter()
                .flatten()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count();
            (ready == 3).then_some(slice)
        })
        .await;
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
            Some("endpointslice-controller.k8s.io")
        );
        assert_eq!(slice.address_type, "IPv4");
        let ports = slice.ports.clone().unwrap_or_default();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, Some(8080));
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        for endpoint in slice.endpoints.iter().flatten() {
            assert_eq!(endpoint.node_name.as_deref(), Some("n1"));
            let target = endpoint.target_ref.as_ref().expect("targetRef");
            assert_eq!(target.kind.as_deref(), Some("Pod"));
        }

        // Scaled down to one: two pods go (gracefully, finished by the kubelet), the slice
        // follows.
        sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}})))
            .await
            .expect("scale");
        eventually("one pod left", Duration::from_secs(30), || async {
            let live = play_kubelet(&pods).await;
            (live.len() == 1).then_some(())
        })
        .await;
        eventually("the slice holds one endpoint", Duration::from_secs(30), || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?;
            let total: usize = list.items.iter().map(|s| s.endpoints.as_ref().map_or(0, Vec::len)).sum();
            (total == 1).then_some(())
        })
        .await;

        // An orphan with the ReplicaSet's labels is adopted — and, being one too many, one of
        // the two is deleted.
        let stray: Pod = serde_json::from_value(json!({
            "metadata": {"name": "stray", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
        }))
        .expect("a Pod");
        pods.create(&PostParams::default(), &stray).await.expect("stray");
        eventually("back to one owned pod", Duration::from_secs(30), || async {
            let live = play_kubelet(&pods).await;
            if live.len() != 1 {
                return None;
            }
            let pod = pods.get(&live[0]).await.ok()?;
            let owned = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true));
            owned.then_some(())
        })
        .await;
        // The status follows the pods in the controller's next sync, not with them: waiting
        // for it, as the other checks above do, fails only if it never gets there.
        eventually("web's status counts 1 again", Duration::from_secs(30), || async {
            let rs = sets.get("web").await.ok()?;
            (rs.status.map(|s| s.replicas) == Some(1)).then_some(())
        })
        .await;

        // Foreground deletion: the garbage collector deletes the pods (the kubelet finishes
        // them), and only then the ReplicaSet goes.
        let foreground = DeleteParams::foreground();
        sets.delete("web", &foreground).await.expect("delete web");
        let while_pods_remain = sets.get_opt("web").await.expect("get web");
        assert!(
            while_pods_remain.is_some_and(|rs| rs.metadata.deletion_timestamp.is_some()),
            "the ReplicaSet waits for its pods"
        );
        eventually("web and its pods gone", Duration::from_secs(30), || async {
            let live = play_kubelet(&pods).await;
            let rs = sets.get_opt("web").await.ok()?;
            (live.is_empty() && rs.is_none()).then_some(())
        })
        .await;

        // Background deletion: the ReplicaSet goes at once, the collector deletes its pods.
        sets.create(&PostParams::default(), &rs_of("bg", 2))
            .await
            .expect("bg created");
        eventually("bg's two pods", Duration::from_secs(30), || async {
            let live = play_kubelet(&pods).await;
            (live.len() == 2).then_some(())
        })
        .await;
        sets.delete("bg", &DeleteParams::background()).await.expect("delete bg");
        assert!(sets.get_opt("bg").await.expect("get bg").is_none());
        eventually("bg's pods collected", Duration::from_secs(30), || async {
            let live = play_kubelet(&pods).await;
            live.is_empty().then_some(())
        })
        .await;
            });
}

fn rs_of(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/c:1",
                    "resources": {"requests": {"cpu": "100m"}}}]},
            },
        },
    }))
    .expect("a ReplicaSet")
}

/// Whether a pod counts as ready: Running, Ready, and not being deleted.
fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A Deployment of 5 rolled to a new image never has fewer than `replicas - maxUnavailable`
/// ready pods (counted from a watch at every change), ends with the old ReplicaSet at 0, and
/// `kubectl rollout status`, `rollout history` and `rollout undo` work unchanged.
#[test]
fn a_deployment_rolls_out_within_its_budget_and_rolls_back() {
    let server = ApiServer::start_with_components(Backend::Keel, &[]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("a Node");
        nodes.create(&PostParams::default(), &node).await.expect("node");
        let capacity = json!({"cpu": "32", "memory": "64Gi", "pods": "110"});
        nodes
            .patch_status("n1", &PatchParams::default(), &Patch::Merge(json!({"status": {"capacity": capacity, "allocatable": capacity}})))
            .await
            .expect("node status");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        // The kubelet, all along.
        let kubelet_pods = pods.clone();
        let kubelet = tokio::spawn(async move {
            loop {
                play_kubelet(&kubelet_pods).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        // Ready pods of the Deployment, counted at every watch event.
        let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(0usize);
        let min_ready = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
        let counting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watch_pods = pods.clone();
        let (min, on) = (min_ready.clone(), counting.clone());
        let watcher = tokio::spawn(async move {
            use futures::StreamExt;
            let mut stream = kube::runtime::watcher(
                watch_pods,
                kube::runtime::watcher::Config::default().labels("app=app"),
            )
            .boxed();
            let mut ready = std::collections::BTreeMap::new();
            while let Some(Ok(event)) = stream.next().await {
                match event {
                    kube::runtime::watcher::Event::Apply(pod) | kube::runtime::watcher::Event::InitApply(pod) => {
                        ready.insert(pod.metadata.name.clone().unwrap_or_default(), is_ready(&pod));
                    }
                    kube::runtime::watcher::Event::Delete(pod) => {
                        ready.remove(&pod.metadata.name.clone().unwrap_or_default());
                    }
                    _ => continue,
                }
                let count = ready.values().filter(|r| **r).count();
                if on.load(std::sync::atomic::Ordering::SeqCst) {
                    min.fetch_min(count, std::sync::atomic::Ordering::SeqCst);
                }
                let _ = ready_tx.send(count);
            }
        });

        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), "default");
        let deployment = serde_json::from_value(json!({
            "metadata": {"name": "app"},
            "spec": {
                "replicas": 5,
                "selector": {"matchLabels": {"app": "app"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "app"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:v1",
                        "resources": {"requests": {"cpu": "100m"}}}]},
                },
            },
        }))
        .expect("a Deployment");
        deployments.create(&PostParams::default(), &deployment).await.expect("created");
        let rolled = |generation: i64| {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("app").await.ok()?;
                let status = d.status?;
                (status.observed_generation == Some(generation)
                    && status.updated_replicas == Some(5)
                    && status.available_replicas == Some(5)
                    && status.replicas == Some(5))
                .then_some(())
            }
        };
        eventually("the first rollout", Duration::from_secs(60), || rolled(1)).await;
        let status = server.kubectl(&["rollout", "status", "deployment/app", "--timeout=30s"]);
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        assert!(String::from_utf8_lossy(&status.stdout).contains("successfully rolled out"));
        ready_rx.wait_for(|count| *count == 5).await.expect("5 ready");
        first_rollout_events(&client).await;

        // Roll to v2, counting ready pods throughout.
        counting.store(true, std::sync::atomic::Ordering::SeqCst);
        deployments
            .patch("app", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.invalid/app:v2"}]}}}})))
            .await
            .expect("new image");
        eventually("the second rollout", Duration::from_secs(90), || rolled(2)).await;
        counting.store(false, std::sync::atomic::Ordering::SeqCst);
        let lowest = min_ready.load(std::sync::atomic::Ordering::SeqCst);
        assert!(lowest >= 4 && lowest != usize::MAX, "ready pods fell to {lowest} during the rollout (replicas 5, maxUnavailable 1)");

        let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
        let list = sets.list(&ListParams::default()).await.expect("replicasets");
        let image_of = |rs: &ReplicaSet| {
            rs.spec
                .template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default()
        };
        let old = list.items.iter().find(|rs| image_of(rs).ends_with(":v1")).expect("the old ReplicaSet");
        assert_eq!(old.spec.replicas, Some(0));
        let history = server.kubectl_ok(&["rollout", "history", "deployment/app"]);
        assert!(history.lines().any(|l| l.trim_start().starts_with('1')), "{history}");
        assert!(history.lines().any(|l| l.trim_start().starts_with('2')), "{history}");

        // kubectl rollout undo: back to v1, through the old ReplicaSet.
        server.kubectl_ok(&["rollout", "undo", "deployment/app"]);
        eventually("the rollback", Duration::from_secs(90), || rolled(3)).await;
        let d = deployments.get("app").await.expect("app");
        let image = d
            .spec
            .template
            .spec
            .and_then(|s| s.containers.first().and_then(|c| c.image.clone()));
        assert_eq!(image.as_deref(), Some("registry.invalid/app:v1"));
        let list = sets.list(&ListParams::default()).await.expect("replicasets");
        let v1 = list.items.iter().find(|rs| image_of(rs).ends_with(":v1")).expect("v1 again");
        assert_eq!(v1.spec.replicas, Some(5));
        let revision = v1.metadata.annotations.as_ref().and_then(|a| a.get("deployment.kubernetes.io/revision").cloned());
        assert_eq!(revision.as_deref(), Some("3"), "the reused ReplicaSet takes the next revision");
        kubelet.abort();
        watcher.abort();
    });
}

/// The events of the first rollout, as `kubectl describe` shows them: the Deployment's
/// `ScalingReplicaSet` from `deployment-controller` (its new ReplicaSet scaled up from 0 to 5)
/// and the ReplicaSet's `SuccessfulCreate` from `replicaset-controller`, one per pod it owns.
/// Events are written asynchronously, so they are polled for.
async fn first_rollout_events(client: &kube::Client) {
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let list = sets
        .list(&ListParams::default())
        .await
        .expect("replicasets");
    let [rs] = list.items.as_slice() else {
        panic!(
            "one ReplicaSet after the first rollout, not {}",
            list.items.len()
        );
    };
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let owned: std::collections::BTreeSet<String> = pods
        .list(&ListParams::default().labels("app=app"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|pod| {
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|owner| owner.uid == rs_uid && owner.controller == Some(true))
        })
        .filter_map(|pod| pod.metadata.name)
        .collect();
    assert_eq!(owned.len(), 5, "{owned:?}");
    let deployment_uid =
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), "default")
            .get("app")
            .await
            .expect("app")
            .metadata
            .uid;
    let component = |event: &Event| event.source.as_ref().and_then(|s| s.component.clone());
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = events.list(&ListParams::default()).await.expect("events");
        let scaling: Vec<&Event> = list
            .items
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some("ScalingReplicaSet")
                    && e.involved_object.kind.as_deref() == Some("Deployment")
                    && e.involved_object.name.as_deref() == Some("app")
            })
            .collect();
        let created: Vec<&Event> = list
            .items
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some("SuccessfulCreate")
                    && e.involved_object.kind.as_deref() == Some("ReplicaSet")
                    && e.involved_object.name.as_deref() == Some(rs_name.as_str())
            })
            .collect();
        let created_pods: std::collections::BTreeSet<String> = created
            .iter()
            .filter_map(|e| e.message.as_deref()?.strip_prefix("Created pod: "))
            .map(str::to_string)
            .collect();
        let scaled_up = format!("Scaled up replica set {rs_name} from 0 to 5");
        let scaled = scaling
            .iter()
            .find(|e| e.message.as_deref() == Some(scaled_up.as_str()));
        if let (Some(event), true) = (scaled, created_pods.len() >= owned.len()) {
            for event in &scaling {
                assert_eq!(event.type_.as_deref(), Some("Normal"), "{event:?}");
                assert_eq!(
                    component(event).as_deref(),
                    Some("deployment-controller"),
                    "{event:?}"
                );
            }
            assert_eq!(event.involved_object.uid, deployment_uid);
            for event in &created {
                assert_eq!(event.type_.as_deref(), Some("Normal"), "{event:?}");
                assert_eq!(
                    component(event).as_deref(),
                    Some("replicaset-controller"),
                    "{event:?}"
                );
                assert_eq!(event.involved_object.uid.as_deref(), Some(rs_uid.as_str()));
            }
            // Every pod the ReplicaSet owns was announced, and nothing else.
            assert_eq!(created_pods, owned);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {scaled_up:?} or SuccessfulCreate events: {scaling:?}, {created_pods:?} of {owned:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node IPAM gives each node its own /24 of the cluster CIDR (`spec.podCIDR` and
/// `spec.podCIDRs`), as kube-controller-manager's range allocator does at registration.
#[test]
fn nodes_get_pod_cidrs_of_the_cluster_cidr() {
    let server =
        ApiServer::start_with_components(Backend::Keel, &["--cluster-cidr", "10.250.0.0/16"]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let names = ["n1", "n2", "n3"];
        for name in names {
            let node: Node =
                serde_json::from_value(json!({"metadata": {"name": name}})).expect("a Node");
            nodes
                .create(&PostParams::default(), &node)
                .await
                .expect("node");
        }
        let cidrs = eventually("pod CIDRs assigned", Duration::from_secs(20), || async {
            let mut cidrs = Vec::new();
            for name in names {
                let spec = nodes.get(name).await.ok()?.spec?;
                let cidr = spec.pod_cidr?;
                assert_eq!(spec.pod_cidrs, Some(vec![cidr.clone()]));
                cidrs.push(cidr);
            }
            Some(cidrs)
        })
        .await;
        let distinct: std::collections::BTreeSet<&String> = cidrs.iter().collect();
        assert_eq!(distinct.len(), 3, "{cidrs:?}");
        for cidr in &cidrs {
            assert!(
                cidr.starts_with("10.250.") && cidr.ends_with(".0/24"),
                "{cidr}"
            );
        }
    });
}
