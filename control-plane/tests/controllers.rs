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
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::api::{ApiServer, Backend};

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
        let rs = sets.get("web").await.expect("web");
        assert_eq!(rs.status.map(|s| s.replicas), Some(1));

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
